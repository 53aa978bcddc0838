"""`lifecycle failed|replay|status` through click's CliRunner, against real Redis, RQ and the sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from click.testing import Result as CliResult
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer

from tests.e2e.system import APP_ID, APP_TOKEN, SECRET, System
from worker import ops
from worker.cli import main
from worker.errors import ReplayError
from worker.jobs import enqueue_payload

WRITES = ("POST /crm/v3/objects/contacts/batch/update", "POST /crm/v3/objects/tasks/batch/create",
          "POST /crm/v3/objects/deals/batch/create")


@pytest.fixture()
def system(redis_url: str, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> Iterator[System]:
    s = System(redis_url).start()
    monkeypatch.setattr(s.deps.hubspot, "_stop_s", 0.3)  # a 500 fails the job in well under a second
    monkeypatch.setattr(s.deps.hubspot, "_max_attempts", 2)
    try:
        yield s
    finally:
        s.stop()


def _env(system: System | None, redis_url: str) -> dict[str, str | None]:
    env: dict[str, str | None] = {"REDIS_URL": redis_url, "LIFECYCLE_CONFIG": None, "COLUMNS": "200",
                                  "HUBSPOT_ACCESS_TOKEN": APP_TOKEN, "HUBSPOT_CLIENT_SECRET": SECRET,
                                  "HUBSPOT_APP_ID": APP_ID, "LIFECYCLE_REPLAY_RATE": None}
    if system is not None:
        env["HUBSPOT_BASE_URL"] = system.base
    return env


def _run(system: System | None, redis_url: str, *args: str, input: str | None = None) -> CliResult:
    return CliRunner(env=_env(system, redis_url)).invoke(main, list(args), input=input)


def _faults(system: System, *rules: dict[str, Any]) -> None:
    system.session.post(f"{system.base}/_sandbox/faults", json={"rules": list(rules)}, timeout=10).raise_for_status()


def _clear_faults(system: System) -> None:
    system.session.delete(f"{system.base}/_sandbox/faults", timeout=10).raise_for_status()


def _fail_a_job(system: System, *, contacts: int = 2) -> tuple[str, list[str], list[str]]:
    """(failed job id, its contacts, the ids of the jobs it absorbed): one webhook delivery per
    contact, so the first job absorbs the others and then fails on a 500 from the batch write."""
    cids = []
    for i in range(contacts):
        cids.append(system.rep_create_contact(email=f"f{i}@ex.test", hubspotscore=150))
        system.flush()
    job_id, *others = system.queue.job_ids
    assert len(others) == contacts - 1
    _fail_queued_jobs(system)
    assert system.failed_jobs() == [job_id]
    return job_id, cids, others


def _fail_queued_jobs(system: System) -> None:
    """Run the queued jobs with every batch write answering 500, until they are failed: their
    RQ retries (10 s to 2 min apart in config.yaml) are cut to one, right away."""
    for job in system.queue.jobs:
        job.retries_left, job.retry_intervals = 1, [0]
        job.save()
    _faults(system, {"method": "POST", "path": "contacts/batch/update", "status": 500, "rate": 1.0})
    system.work()


def _calls(system: System) -> dict[str, int]:
    return dict(system.stats()["calls"])


def _tasks(system: System, subject: str) -> int:
    return len([t for t in system.objects("tasks") if subject in t["properties"]["hs_task_subject"]])


def test_failed_list_show_then_replay_finishes_the_job(system: System) -> None:
    job_id, cids, absorbed = _fail_a_job(system)

    table = _run(system, system.redis_url, "failed", "list")
    assert table.exit_code == 0, table.output
    assert job_id in table.output and "HubSpotTransientError" in table.output and "500" in table.output
    listed = json.loads(_run(system, system.redis_url, "failed", "list", "--json").output)
    assert [(f["id"], f["contacts"], f["events"], f["absorbed"], f["attempts"], f["retries"]) for f in listed] == [
        (job_id, 2, 4, absorbed, 1, 1)]
    assert "contacts.batch.update: HubSpot answered 500" in listed[0]["error"]
    assert json.loads(_run(system, system.redis_url, "failed", "list", "--error", "429", "--json").output) == []

    shown = _run(system, system.redis_url, "failed", "show", job_id)
    assert shown.exit_code == 0, shown.output
    assert "Traceback" in shown.output and "contact.creation" in shown.output and absorbed[0] in shown.output
    assert "in the failed registry; attempts 1 (+1 retries); 2 contacts, 4 events" in shown.output
    detail = json.loads(_run(system, system.redis_url, "failed", "show", job_id, "--json").output)
    assert {e["id"] for e in detail["event_list"]} == set(cids) and detail["events"] == 4
    assert {cid: v["contact_status"] for cid, v in detail["current"].items()} == {cid: None for cid in cids}

    _clear_faults(system)
    replayed = _run(system, system.redis_url, "replay", job_id)
    assert replayed.exit_code == 0, replayed.output
    assert f"job {job_id}: requeued with 1 absorbed job" in replayed.output
    assert replayed.output.strip().endswith("1 replayed, 0 failed")
    system.settle()
    for cid in cids:
        assert (system.contact(cid)["contact_status"], system.contact(cid)["contact_milestone"]) == ("mql", "assigned")
    assert _tasks(system, "New MQL") == 2  # the failed run made them; the replay did not make them again
    assert _run(system, system.redis_url, "failed", "list").output.strip() == "No failed jobs."
    assert system.conn.keys("lc:absorbed:*") == []


def test_replay_dry_run_prints_the_diff_and_changes_nothing(system: System) -> None:
    job_id, cids, _ = _fail_a_job(system)
    _clear_faults(system)
    before = _calls(system)

    result = _run(system, system.redis_url, "replay", "--dry-run", job_id)

    assert result.exit_code == 0, result.output
    assert f"job {job_id}: would change 2 of 2 contacts" in result.output
    for cid in cids:
        assert f"{cid}: contact_status: (empty) → mql" in result.output
        assert f"{cid}: contact_milestone: (empty) → assigned" in result.output
    assert "+ assign_owner" in result.output
    # the failed run had created the tasks before the write failed: the worker's ledger skips them
    assert result.output.count("+ create_task (kind=new_mql") == 2
    assert result.output.count("— already done, skipped") == 2
    assert result.output.strip().endswith("1 replayed, 0 failed (dry run)")
    after = _calls(system)
    assert {k: after.get(k, 0) - before.get(k, 0) for k in WRITES} == dict.fromkeys(WRITES, 0)
    assert after["POST /crm/v3/objects/contacts/batch/read"] > before["POST /crm/v3/objects/contacts/batch/read"]
    assert system.failed_jobs() == [job_id] and system.queue.count == 0
    assert system.contact(cids[0])["contact_status"] in (None, "")


def test_concurrent_replays_of_one_job_enqueue_it_once(system: System) -> None:
    job_id, _, _ = _fail_a_job(system, contacts=1)
    registry = FailedJobRegistry(queue=system.queue)
    start, outcomes = threading.Barrier(8), []

    def replay() -> None:
        start.wait()
        try:
            outcomes.append(ops.replay_one(system.deps, registry, job_id, dry_run=False))
        except ReplayError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=replay) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len([o for o in outcomes if o == "requeued"]) == 1, outcomes
    assert len([o for o in outcomes if isinstance(o, ReplayError)]) == 7
    assert system.queue.job_ids == [job_id] and system.failed_jobs() == []

    # and as two `lifecycle replay` processes started together
    system.conn.delete(system.queue.key)
    job = Job.fetch(job_id, connection=system.conn, serializer=system.queue.serializer)
    registry.add(job, ttl=60, exc_string="again")
    env = {**os.environ, **{k: v for k, v in _env(system, system.redis_url).items() if v is not None}}
    cmd = [sys.executable, "-m", "worker.cli", "replay", job_id]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    codes = sorted(p.wait(60) for p in procs)
    assert codes == [0, 1], [p.stdout.read() for p in procs if p.stdout]
    assert system.queue.job_ids == [job_id] and system.failed_jobs() == []


def test_replaying_a_job_whose_work_was_done_another_way_changes_nothing(system: System) -> None:
    cid = system.rep_create_contact(email="done@ex.test", hubspotscore=120)
    system.settle()
    system.rep_update(cid, contact_milestone="sales_qualified")
    system.flush()
    [job_id] = system.queue.job_ids
    _fail_queued_jobs(system)
    assert system.failed_jobs() == [job_id]
    _clear_faults(system)
    # another path does the job's work: the same events again (a redelivery past the door's ledger)
    payload = Job.fetch(job_id, connection=system.conn, serializer=system.queue.serializer).args[0]
    enqueue_payload(system.deps, payload)
    system.settle()
    done = system.contact(cid)
    deals, gmv_tasks, before = len(system.objects("deals")), _tasks(system, "GMV"), _calls(system)
    assert done["contact_status"] != "mql" and deals == 1 and gmv_tasks == 1

    plan = _run(system, system.redis_url, "replay", "--dry-run", job_id).output
    assert f"job {job_id}: would change 0 of 1 contacts" in plan and f"{cid}: no change" in plan

    assert _run(system, system.redis_url, "replay", job_id).exit_code == 0
    system.settle()

    assert system.failed_jobs() == []
    assert Job.fetch(job_id, connection=system.conn, serializer=system.queue.serializer).get_status() == "finished"
    assert system.contact(cid) == done
    assert (len(system.objects("deals")), _tasks(system, "GMV")) == (deals, gmv_tasks)
    after = _calls(system)
    assert {k: after.get(k, 0) - before.get(k, 0) for k in WRITES} == dict.fromkeys(WRITES, 0)


def test_purge_asks_then_removes_jobs_and_absorbed_keys(system: System) -> None:
    job_id, _, absorbed = _fail_a_job(system)
    assert system.conn.keys("lc:absorbed:*")

    declined = _run(system, system.redis_url, "failed", "purge", "--older-than", "0s", input="n\n")
    assert declined.exit_code == 1 and system.failed_jobs() == [job_id]
    assert _run(system, system.redis_url, "failed", "purge", "--yes").output.strip() == "Nothing to purge."

    purged = _run(system, system.redis_url, "failed", "purge", "--older-than", "0s", "--yes")

    assert purged.exit_code == 0, purged.output
    assert purged.output.strip() == "1 failed job purged."
    assert system.failed_jobs() == []
    assert not system.conn.exists(Job.key_for(job_id), *(Job.key_for(j) for j in absorbed))
    assert system.conn.keys("lc:absorbed:*") == [] and system.conn.keys("rq:results:*") == []


def test_status_shows_queue_failed_and_limiter_headroom(system: System) -> None:
    _fail_a_job(system, contacts=1)
    system.rep_create_contact(email="waiting@ex.test")
    system.flush()

    result = _run(system, system.redis_url, "status")

    assert result.exit_code == 0, result.output
    assert "queue hubspot: 1 waiting" in result.output and "1 failed" in result.output
    assert "rate limiter:" in result.output and "/90 requests in the last 10 s" in result.output
    assert "last reconcile: never" in result.output and "workers alive: 0" in result.output
    assert "(headroom " in result.output
    assert "\nredis: " in result.output  # its settings, or a WARNING naming what to fix (test_redis_health.py)
    system.conn.set(ops.RECONCILE_LAST_KEY, json.dumps({"finished_at": "2026-01-01T00:00:00Z", "contacts": 12}))
    data = json.loads(_run(system, system.redis_url, "status", "--json").output)
    assert (data["queues"]["hubspot"], data["failed"], data["limiter"]["api"]["limit"]) == (1, 1, 90)
    assert data["last_reconcile"] == {"finished_at": "2026-01-01T00:00:00Z", "contacts": 12}
    assert data["redis"]["maxmemory_policy"] == "noeviction" and isinstance(data["redis"]["problems"], list)
    assert "last reconcile: finished 2026-01-01 00:00" in _run(system, system.redis_url, "status").output


def test_replay_selects_by_error_and_since_and_paces_by_rate(redis_url: str, redis_conn: redis.Redis) -> None:
    queue = Queue("hubspot", connection=redis_conn, serializer=JSONSerializer)
    registry = FailedJobRegistry(queue=queue)
    for i in range(4):
        job = queue.create_job("worker.jobs.handle_events", args=({"v": 1, "contacts": {str(i): []}},),
                               job_id=f"hs-1-{i}")
        job.ended_at = datetime.now(UTC) - timedelta(hours=3 if i == 3 else 0)
        exc = f"Traceback ...\nworker.errors.HubSpotTransientError: boom {i % 2}"
        with redis_conn.pipeline() as pipe:  # what a worker records when a job fails
            registry.add(job, ttl=600, exc_string=exc, pipeline=pipe)
            Result.create_failure(job, 600, exc_string=exc, pipeline=pipe)
            pipe.execute()

    one = _run(None, redis_url, "replay", "--error", "BOOM 1", "--since", "1h")
    assert one.exit_code == 0 and one.output.splitlines() == ["job hs-1-1: requeued", "1 replayed, 0 failed"]
    started = time.monotonic()
    paced = _run(None, redis_url, "replay", "--since", "2h", "--rate", "10/s")
    assert paced.exit_code == 0 and paced.output.strip().endswith("2 replayed, 0 failed")
    assert time.monotonic() - started >= 0.1
    assert sorted(queue.job_ids) == ["hs-1-0", "hs-1-1", "hs-1-2"] and registry.get_job_ids() == ["hs-1-3"]


def test_usage_errors_exit_2_with_one_line_and_nothing_failed_exits_0(redis_url: str,
                                                                     redis_conn: redis.Redis) -> None:
    for args in (["replay"], ["replay", "x", "--all"], ["failed", "list", "--since", "2 weeks"],
                 ["replay", "--all", "--rate", "fast"]):
        result = _run(None, redis_url, *args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
    bad_config = CliRunner(env={**_env(None, redis_url), "LIFECYCLE_CONFIG": "/nonexistent.yaml"}).invoke(
        main, ["status"])
    assert bad_config.exit_code == 2 and bad_config.stderr.startswith("error: /nonexistent.yaml")
    nothing = _run(None, redis_url, "replay", "--all")
    assert (nothing.exit_code, nothing.output) == (0, "Nothing to replay.\n")
    missing = _run(None, redis_url, "replay", "hs-1-nope")
    assert missing.exit_code == 1 and "no such job" in missing.stderr
    assert missing.stdout.strip() == "0 replayed, 1 failed"
