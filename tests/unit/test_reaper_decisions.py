"""worker/reaper.py: when is a worker gone, and the `worker.reaper` settings."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.factories import CONFIG
from worker.errors import ConfigError
from worker.reaper import (
    HEARTBEAT_STALE,
    HORSE_PID_FIELD,
    PID_DEAD,
    SUPERSEDED,
    WORKER_EXPIRED,
    pid_alive,
    worker_gone,
)
from worker.settings import load_settings

NOW = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)
HOST = "worker-host-a"
ALIVE = {101, 202}


def alive(pid: int) -> bool:
    return pid in ALIVE


def worker(*, host: str = HOST, pid: int = 101, beat_age_s: float = 5.0, **extra: str) -> dict[str, str]:
    beat = (NOW - timedelta(seconds=beat_age_s)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # as RQ writes it
    return {"hostname": host, "pid": str(pid), "last_heartbeat": beat, "birth": beat, **extra}


def gone(data: dict[str, str], *, after_outage: bool = False, stale_after_s: float = 60.0) -> str | None:
    return worker_gone(data, host=HOST, now=NOW, stale_after_s=stale_after_s, alive=alive,
                       after_outage=after_outage)


@pytest.mark.parametrize(("data", "expected"), [
    pytest.param({}, WORKER_EXPIRED, id="hash-expired"),
    pytest.param(worker(), None, id="this-host-pid-alive"),
    pytest.param(worker(pid=999), PID_DEAD, id="this-host-pid-dead"),
    pytest.param(worker(pid=999, **{HORSE_PID_FIELD: "202"}), None, id="dead-worker-but-its-horse-runs"),
    pytest.param(worker(pid=999, **{HORSE_PID_FIELD: "998"}), PID_DEAD, id="worker-and-horse-dead"),
    pytest.param(worker(host="other-host", pid=999), None, id="other-host-pid-not-ours-to-check"),
    pytest.param(worker(host="other-host", beat_age_s=61), HEARTBEAT_STALE, id="other-host-stale"),
    pytest.param(worker(host="other-host", beat_age_s=59), None, id="other-host-fresh"),
    pytest.param(worker(beat_age_s=120), HEARTBEAT_STALE, id="this-host-reused-pid-stale-beat"),
    pytest.param(worker(pid=999, beat_age_s=120, **{HORSE_PID_FIELD: "202"}), HEARTBEAT_STALE,
                 id="orphaned-horse-gets-the-stale-threshold-no-more"),
    pytest.param({"last_heartbeat": "not a date", "pid": "x", "hostname": HOST}, None, id="garbage-is-not-death"),
    pytest.param({"death": "2026-12-04T11:59:59.000000Z", **worker()}, None, id="registered-death-waits-for-expiry"),
])
def test_when_a_worker_is_gone(data: dict[str, str], expected: str | None) -> None:
    assert gone(data) == expected


@pytest.mark.parametrize(("data", "after_outage", "expected"), [
    pytest.param(worker(), False, SUPERSEDED, id="rebuilt-after-an-outage"),
    pytest.param(worker(), True, SUPERSEDED, id="counts-right-after-the-outage-too"),
    pytest.param(worker(**{HORSE_PID_FIELD: "202"}), True, None, id="its-horse-still-runs-the-job"),
    pytest.param(worker(pid=999), False, PID_DEAD, id="a-dead-pid-says-dead-first"),
    pytest.param(worker(host="other-host"), False, None, id="other-hosts-are-judged-by-heartbeat"),
])
def test_a_worker_whose_process_runs_a_newer_worker_is_gone(data: dict[str, str], after_outage: bool,
                                                             expected: str | None) -> None:
    assert worker_gone(data, host=HOST, now=NOW, stale_after_s=60.0, alive=alive, after_outage=after_outage,
                       superseded=True) == expected


def test_the_stale_threshold_is_the_setting() -> None:
    assert gone(worker(host="other-host", beat_age_s=50), stale_after_s=45) == HEARTBEAT_STALE
    assert gone(worker(host="other-host", beat_age_s=50), stale_after_s=55) is None


@pytest.mark.parametrize(("data", "expected"), [
    pytest.param({}, None, id="expired-hash-proves-nothing"),
    pytest.param(worker(host="other-host", beat_age_s=300), None, id="stale-beat-proves-nothing"),
    pytest.param(worker(pid=999), PID_DEAD, id="a-dead-pid-still-counts"),
])
def test_just_after_a_redis_outage_only_a_dead_pid_counts(data: dict[str, str], expected: str | None) -> None:
    assert gone(data, after_outage=True) == expected


def test_pid_alive_sees_live_dead_and_zombie_processes() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(0) and not pid_alive(-1)
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    assert not pid_alive(done.pid)  # exited and reaped
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{zombie.pid}/stat").exists() and b") Z" not in Path(f"/proc/{zombie.pid}/stat").read_bytes():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not pid_alive(zombie.pid)  # exited, not yet waited for: a zombie is not a live worker
    finally:
        zombie.wait()


# -- settings ---------------------------------------------------------------------------------------
def _config(tmp_path: Path, **reaper: Any) -> Path:
    data = copy.deepcopy(yaml.safe_load(CONFIG.read_text(encoding="utf-8")))
    data["worker"]["reaper"] = {**data["worker"].get("reaper", {}), **reaper}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_the_shipped_reaper_settings() -> None:
    r = load_settings(CONFIG, environ={}).worker.reaper
    assert (r.enabled, r.interval_s, r.stale_after_s, r.max_replays, r.overdue_after_s) == (True, 1.0, 60.0, 3, 5.0)


def test_the_reaper_can_be_turned_off_and_tuned(tmp_path: Path) -> None:
    r = load_settings(_config(tmp_path, enabled=False, interval_s=0.5, max_replays=0), environ={}).worker.reaper
    assert (r.enabled, r.interval_s, r.max_replays) == (False, 0.5, 0)


def test_a_config_without_a_reaper_section_gets_the_defaults(tmp_path: Path) -> None:
    data = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    data["worker"].pop("reaper", None)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert load_settings(path, environ={}).worker.reaper.enabled is True


@pytest.mark.parametrize(("values", "key", "problem"), [
    pytest.param({"stale_after_s": 30}, "worker.reaper.stale_after_s", "greater than or equal to 40",
                 id="stale-too-short"),
    pytest.param({"interval_s": 0}, "worker.reaper.interval_s", "greater than 0", id="interval-zero"),
    pytest.param({"max_replays": -1}, "worker.reaper.max_replays", "greater than or equal to 0", id="negative-replays"),
    pytest.param({"overdue_after_s": 0}, "worker.reaper.overdue_after_s", "greater than 0", id="overdue-zero"),
    pytest.param({"enable": False}, "worker.reaper.enable", "Extra inputs are not permitted", id="typo"),
])
def test_bad_reaper_settings_name_the_key(tmp_path: Path, values: dict[str, Any], key: str, problem: str) -> None:
    path = _config(tmp_path, **values)
    with pytest.raises(ConfigError) as err:
        load_settings(path, environ={})
    assert str(err.value).startswith(f"{path}: {key}: ") and problem in str(err.value), str(err.value)
