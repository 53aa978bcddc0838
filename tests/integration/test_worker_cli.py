"""`lifecycle worker` as the Procfile runs it: config errors exit 2, SIGTERM stops it cleanly,
and its metrics (incremented in forked work-horses) are served."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.e2e.system import System
from worker.jobs import enqueue_payload


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_missing_token_exits_2_with_one_line(redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HUBSPOT_ACCESS_TOKEN"}
    done = subprocess.run([sys.executable, "-m", "worker.cli", "worker", "--burst"], env=env | {"REDIS_URL": redis_url},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    expected = "lifecycle worker: missing environment variable(s): HUBSPOT_ACCESS_TOKEN"
    assert done.stderr.strip().splitlines() == [expected]


def test_worker_processes_jobs_serves_metrics_and_stops_on_sigterm(system: System, tmp_path: Path) -> None:
    cid = system.rep_create_contact(email="m@ex.test", hubspotscore=150)
    system.flush()
    port = _port()
    env = dict(os.environ, REDIS_URL=system.redis_url, HUBSPOT_BASE_URL=system.base,
               HUBSPOT_ACCESS_TOKEN="e2e-app-token", HUBSPOT_APP_ID="4242")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:  # shown if it does not stop: what its job was doing
        proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "worker", "--metrics-port", str(port)],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while system.contact(cid).get("contact_status") != "mql" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert system.contact(cid)["contact_status"] == "mql"
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'lifecycle_hubspot_calls_total{endpoint="contacts.batch.update",status="ok"}' in metrics
        assert 'lifecycle_jobs_total{outcome="ok"}' in metrics
        enqueue_payload(system.deps, {"v": 1, "portal_id": 62515, "contacts": {}, "emails": {}, "companies": {}})
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(60)  # a warm shutdown: the job it is running finishes first
        except subprocess.TimeoutExpired:
            pytest.fail("no exit 60 s after SIGTERM; its log:\n" + log_path.read_text(errors="replace")[-4000:])
        assert code == 0, log_path.read_text(errors="replace")[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
