"""`lifecycle serve` under gunicorn (as the Procfile runs it): health, a signed delivery, metrics."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tools.redis_runtime import free_port
from webhooks.testing import encode, hubspot_event, signed_headers
from worker.procs import stop_group

pytestmark = pytest.mark.integration

SECRET = "serve-client-secret"
LIFECYCLE = Path(sys.executable).with_name("lifecycle")


def command(*args: str) -> list[str]:
    if LIFECYCLE.exists():
        return [str(LIFECYCLE), *args]
    return [sys.executable, "-m", "worker.cli", *args]


def request(port: int, method: str, path: str, body: bytes = b"",
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.fixture()
def server(redis_url: str, redis_conn: redis.Redis, tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(HUBSPOT_CLIENT_SECRET=SECRET, REDIS_URL=redis_url, TMPDIR=str(tmp_path))
    proc = subprocess.Popen(command("serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "exited"
            try:
                if request(port, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "lifecycle serve did not answer /healthz within 20 s"
            time.sleep(0.1)
        yield port, proc
    finally:
        stop_group(proc)


def deliver(port: int, events: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    body = encode(events)
    url = f"http://127.0.0.1:{port}/webhooks/hubspot"
    headers = {**signed_headers(secret=SECRET, url=url, body=body, timestamp_ms=time.time_ns() // 1_000_000),
               "Content-Type": "application/json"}
    status, _, answer = request(port, "POST", "/webhooks/hubspot", body, headers)
    return status, json.loads(answer)


def test_serve_answers_health_and_a_signed_delivery(server: tuple[int, subprocess.Popen[bytes]],
                                                    redis_conn: redis.Redis, tmp_path: Path) -> None:
    port, proc = server
    assert request(port, "GET", "/readyz")[0] == 200
    status, answer = deliver(port, [hubspot_event(objectId=n) for n in range(3)])
    assert status == 200 and answer == {"accepted": 3, "duplicates": 0, "dropped": 0, "jobs": 1}
    assert redis_conn.llen("rq:queue:hubspot") == 1
    assert request(port, "POST", "/webhooks/hubspot", b"[]")[0] == 401
    assert request(port, "POST", "/_bench/noop")[0] == 404

    # Several deliveries land on both workers; every scrape sees the sum (multiprocess mode).
    for n in range(9):
        assert deliver(port, [hubspot_event(objectId=100 + n)])[0] == 200
    for _ in range(4):
        status, headers, text = request(port, "GET", "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain")
        body = text.decode()
        assert 'lifecycle_webhook_requests_total{endpoint="hubspot",outcome="ok"} 10.0' in body
        assert 'lifecycle_webhook_events_accepted_total{endpoint="hubspot"} 12.0' in body
        assert 'lifecycle_queue_depth{queue="hubspot"} 10.0' in body
    assert any(tmp_path.glob("lifecycle-prometheus-*/*.db"))

    os.killpg(proc.pid, signal.SIGTERM)
    output = proc.communicate(timeout=15)[0].decode()
    assert proc.returncode == 0
    assert not any(tmp_path.glob("lifecycle-prometheus-*")), "the metrics dir outlived the server"
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("event") == "webhook_request"]
    assert len(requests) == 11
    assert SECRET not in output


def test_serve_refuses_to_start_without_the_client_secret(redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HUBSPOT_CLIENT_SECRET"}
    env["REDIS_URL"] = redis_url
    done = subprocess.run(command("serve", "--port", str(free_port())), env=env, capture_output=True, timeout=30)
    assert done.returncode == 2
    assert b"HUBSPOT_CLIENT_SECRET" in done.stderr
