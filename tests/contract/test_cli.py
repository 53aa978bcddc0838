"""`sandbox` CLI: starts with --seed demo in under 5 s, prints where it listens, reads env fallbacks,
stops cleanly on SIGINT and SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests

pytestmark = pytest.mark.contract


def _start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str, float]:
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = time.monotonic() - started
    match = re.search(r"listening on (http://\S+)", line)
    assert match, f"unexpected first line {line!r}"
    return proc, match.group(1), elapsed


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_starts_fast_and_stops_on_signal(sig: signal.Signals) -> None:
    proc, url, elapsed = _start(["--port", "0", "--seed", "demo", "--app-token", "cli-token"], {})
    try:
        assert elapsed < 5.0
        page = requests.get(
            f"{url}/crm/v3/objects/contacts", headers={"Authorization": "Bearer cli-token"}, timeout=5
        )
        assert page.status_code == 200 and len(page.json()["results"]) == 10
        assert requests.get(f"{url}/_sandbox/objects/contacts", timeout=5).json()["total"] >= 500
    finally:
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "stopped" in out


def test_options_fall_back_to_environment() -> None:
    env = {
        "SANDBOX_PORT": "0",
        "SANDBOX_SEED": "none",
        "HUBSPOT_ACCESS_TOKEN": "env-token",
        "HUBSPOT_APP_ID": "99",
        "SANDBOX_RATE_LIMIT": "3/10s",
    }
    proc, url, _ = _start([], env)
    try:
        response = requests.get(
            f"{url}/crm/v3/objects/contacts", headers={"Authorization": "Bearer env-token"}, timeout=5
        )
        assert response.status_code == 200 and response.json()["results"] == []
        assert response.headers["X-HubSpot-RateLimit-Max"] == "3"
        assert requests.get(f"{url}/webhooks/v3/99/subscriptions?hapikey=dev", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert proc.returncode == 0
