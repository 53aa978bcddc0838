"""`python -m bench.chaos --short`, scenario by scenario, as tests (docs/chaos.md).

Each test runs the whole system as the Procfile's processes against its own Redis, injects
the scenario's faults, settles (replaying failed jobs with `lifecycle replay --all`) and
checks every contact against what the rules say: nothing lost, nothing wrong, no duplicate
side effect, no 5xx served to HubSpot on good input while Redis was up. About two minutes
in all; deselect with `-m "not chaos"`.
"""

from __future__ import annotations

import json
import os

import pytest

from bench.chaos import scenarios
from bench.chaos.scenarios import Result

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]
SEED = 7

# Every race of concurrent-edits is in the must-be-zero run: Findings 1-3 (docs/chaos.md) are
# fixed, and test_known_bugs.py / test_rollup_locks.py reproduce each deterministically; a race
# won once is no proof, those reproductions are.


def assert_zeros(result: Result) -> None:
    problems = result.details.get("verdict", {}).get("problems", [])[:5]
    context = json.dumps({"notes": result.notes, "problems": problems, "recovery": result.recovery,
                          "logs": result.details.get("logs"), "traceback": result.details.get("traceback")},
                         indent=1, default=str)
    assert result.contacts > 0, context
    assert result.lost == 0, context
    assert result.wrong == 0, context
    assert result.duplicates == 0, context
    assert result.http_5xx_redis_up == 0, context
    assert result.ok, context


def test_worker_killed_mid_burst_loses_nothing() -> None:
    result = scenarios.worker_killed(True, SEED)
    assert_zeros(result)
    recovery = result.details["recovery"]
    assert recovery["kills"] >= 3 and recovery["unrecovered"] == 0, recovery


def test_redis_restarted_mid_burst_loses_nothing() -> None:
    result = scenarios.redis_restart(True, SEED)
    assert_zeros(result)
    assert result.http_5xx_redis_down > 0, "the webhook answered while Redis was down?"


# Timing-sensitive on a shared 2-core machine (an outage must outlast every retry; memory
# growth over 20 s): run by `make chaos` and with LIFECYCLE_CHAOS_ALL=1, not by `make test`.
timing_sensitive = pytest.mark.skipif(os.environ.get("LIFECYCLE_CHAOS_ALL") != "1",
                                      reason="timing-sensitive: `make chaos`, or LIFECYCLE_CHAOS_ALL=1")


@timing_sensitive
def test_hubspot_failing_converges_after_retries_and_replay() -> None:
    result = scenarios.hubspot_failing(True, SEED)
    assert_zeros(result)
    assert result.details["faults_served"] > 0
    assert result.replayed_jobs > 0, "the outage was meant to outlast every retry"


def test_duplicated_shuffled_and_late_deliveries_apply_once() -> None:
    result = scenarios.duplicates_disorder(True, SEED)
    assert_zeros(result)
    assert result.details["posted"]["aged"] > 0 and result.details["posted"]["held_back"] > 0


def test_reps_editing_while_the_worker_writes() -> None:
    assert_zeros(scenarios.concurrent_edits(True, SEED, kinds=scenarios.RACE_KINDS, count=12))


def test_hostile_input_is_refused_and_never_a_5xx() -> None:
    """Scenario 6 over HTTP under gunicorn (bench/fuzz.py); tests/fuzz fuzzes the app in-process."""
    result = scenarios.SCENARIOS["hostile-input"](True, SEED)
    assert result.bad_accepted == 0 and result.http_5xx_bad_input == 0, result.details["fuzz"]["summary"]
    assert result.actions > 100 and result.ok, result.details["fuzz"]["summary"]


@timing_sensitive
def test_short_soak_stays_correct_and_flat() -> None:
    result = scenarios.soak(True, SEED)
    assert_zeros(result)
    assert result.details["memory"]["within_bound"], result.details["memory"]["verdict"]
