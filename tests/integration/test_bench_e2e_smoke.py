"""`python -m bench.e2e` runs end to end on a tiny burst and reports sane figures (not a performance test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.redis_runtime import RedisServer

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_bench_e2e_tiny_burst_end_to_end(private_redis: RedisServer, tmp_path: Path) -> None:
    """On a Redis of its own: the bench flushes its database, and a shared one may be flushed under it."""
    report_path = tmp_path / "report.json"
    env = dict(os.environ, COLUMNS="120")
    for name in ("HUBSPOT_ACCESS_TOKEN", "HUBSPOT_CLIENT_SECRET", "HUBSPOT_BASE_URL", "LIFECYCLE_CONFIG"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "bench.e2e", "--contacts", "60", "--companies", "6", "--events", "300",
           "--baseline-events", "30", "--latency-ms", "0", "--rate-limit", "1000/10s", "--workers", "2",
           "--redis-url", private_redis.url, "--redis-db", "0", "--timeout", "60", "--no-stale-bounces",
           "--json", str(report_path)]
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=110)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "Traceback" not in out
    assert time.monotonic() - started < 90
    report = json.loads(report_path.read_text(encoding="utf-8"))
    ours, naive = report["ours"], report["naive"]

    # the burst went through, nothing was lost and nothing failed
    assert ours["events"] == 300 and set(ours["events_by_kind"]) == {"score", "delivered", "milestone", "bounce"}
    failures = {k: v for k, v in ours["checks"].items() if v["failed"]}
    lost = ours["lost_detail"]
    # Known and reported (docs/benchmarks.md): a worker write decided before a rep's concurrent
    # milestone change can overwrite it. Any other loss fails the smoke test.
    unexplained = {k: n for k, n in lost["by_cause"].items() if not k.startswith("rep's change overwritten")}
    assert not unexplained and lost["companies"] == 0 and lost["duplicate_tasks"] == 0, json.dumps(failures, indent=1)
    assert ours["lost"] == sum(lost["by_cause"].values())
    crossed = ours["checks"]["end state: crosser"]
    assert crossed["checked"] > 0 and crossed["failed"] == 0  # every contact that crossed 100 ended mql/assigned
    assert ours["checks"]["crossed 100: one New MQL task"]["failed"] == 0
    assert ours["checks"]["company account_status = highest member status"]["checked"] == 6
    assert ours["failed_jobs"] == 0 and ours["jobs"]["jobs"] > 0
    # A 429 is rare here but possible: the worker's search limiter admits 4 searches per rolling second
    # in bursts and arrival jitter on a busy box can put 6 in the sandbox's second (reported in
    # docs/benchmarks.md). Every 429 must have been retried (no failed job, counted in the retries).
    retried_429 = sum(n for k, n in ours["jobs"]["retries"].items() if k.endswith(" 429"))
    assert ours["rate_limited"] == retried_429 <= 3, ours["jobs"]["retries"]

    # the figures are consistent with each other
    assert ours["api_calls"] == sum(ours["calls_by_endpoint"].values()) > 0
    assert ours["calls_per_event"] == pytest.approx(ours["api_calls"] / ours["events"], abs=1e-3)
    minimum = ours["minimum"]
    assert minimum["total"] == sum(p["calls"] for p in minimum["parts"].values()) > 0
    assert all(p["formula"] for p in minimum["parts"].values())
    assert ours["ratio_to_minimum"] >= 1.0  # nobody does better than the minimum
    assert 0 < ours["wall_s"] < 60 and ours["events_per_s"] > 0
    assert ours["allowed"]["events_per_s"] > 0 and ours["pct_of_allowed"] > 0
    lag = ours["lag_ms"]
    assert lag["contacts"] > 0 and 0 <= lag["p50"] <= lag["p99"]

    # the naive baseline: one job per event, one GET at least per event, and more calls per event than ours
    assert naive["events"] == 30 and naive["failed_jobs"] == 0 and naive["rate_limited"] == 0
    assert naive["calls_by_endpoint"].get("GET /crm/v3/objects/contacts/{id}", 0) >= 30
    assert naive["calls_per_event"] >= 1.0
    assert report["ratios"]["calls_per_event_ours_over_naive"] < 1
    assert set(report["goals"]) >= {"zero 429s", "nothing lost"}
