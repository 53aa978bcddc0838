"""`lifecycle demo` runs the whole system to completion (the README's main job)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import redis


def test_demo_runs_to_completion_in_under_two_minutes(redis_url: str) -> None:
    started = time.monotonic()
    env = dict(os.environ, REDIS_URL=redis_url, COLUMNS="120")
    for name in ("HUBSPOT_ACCESS_TOKEN", "HUBSPOT_CLIENT_SECRET", "HUBSPOT_BASE_URL"):
        env.pop(name, None)
    try:
        done = subprocess.run([sys.executable, "-m", "worker.cli", "demo", "--redis-db", "14"], env=env,
                              capture_output=True, text=True, timeout=120)
    finally:
        redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/14").flushdb()
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert time.monotonic() - started < 120
    assert "16:30" in out and "Company rollups" in out
    assert "Failed jobs left: 0" in out
    assert "customer" in out and "Traceback" not in out
