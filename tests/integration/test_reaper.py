"""The abandoned-job reaper (worker/reaper.py; docs/chaos.md, finding 7) against real Redis and
real RQ registries, and inside real `lifecycle worker` processes.

- A worker SIGKILLed (its whole tree: worker, work horse, scheduler) mid-job: a replacement
  `lifecycle worker --processes 2` recovers the job within seconds and runs it to completion,
  with each side effect once.
- A job abandoned again and again is replayed at most `max_replays` times, then left failed.
- Two reapers racing act once per abandoned execution and enqueue an overdue scheduled job once.
- A Redis outage is logged once and the thread carries on.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
import requests
import yaml
from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from tests.e2e.system import APP_ID, APP_TOKEN, System
from tests.factories import CONFIG
from tools.redis_runtime import RedisServer
from worker.deps import make_deps, make_queue
from worker.jobs import enqueue_payload
from worker.logs import configure_logging
from worker.reaper import REPLAYS_KEY, Reaper, _HeldExecutions
from worker.settings import Settings, load_settings

pytestmark = pytest.mark.integration
FUNC = "worker.jobs.handle_events"


def _settings(redis_url: str, tmp_path: Path, **worker: Any) -> tuple[Settings, Path]:
    data = copy.deepcopy(yaml.safe_load(CONFIG.read_text(encoding="utf-8")))
    data["worker"].update(worker)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    env = {"HUBSPOT_ACCESS_TOKEN": APP_TOKEN, "HUBSPOT_APP_ID": APP_ID, "REDIS_URL": redis_url}
    return load_settings(path, environ=env), path


def _wait(what: str, check: Callable[[], bool], timeout_s: float) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def _status(conn: redis.Redis, job_id: str) -> str | None:
    raw = conn.hget(Job.key_for(job_id), "status")
    return raw.decode() if raw else None


def _dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


def _abandon(conn: redis.Redis, queue: Queue, job_id: str, worker_name: str, *, pid: int | None = None) -> None:
    """What a worker that took `job_id` and then died leaves in Redis: the job started, its
    execution in the StartedJobRegistry (not yet expired), and, with `pid`, the worker's hash
    (this host, that pid); without `pid`, the hash has expired."""
    job = Job.fetch(job_id, connection=conn, serializer=queue.serializer)
    conn.lrem(queue.key, 0, job_id)
    with conn.pipeline() as pipe:
        job.prepare_for_execution(worker_name, pipe)
        Execution.create(job, ttl=600, pipeline=pipe, worker_name=worker_name)
        pipe.execute()
    if pid is not None:
        conn.hset(f"rq:worker:{worker_name}", mapping={
            "hostname": socket.gethostname(), "pid": pid, "queues": queue.name,
            "last_heartbeat": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- a real worker killed mid-job -------------------------------------------------------------------
class WorkerProc:
    """`lifecycle worker` in its own session, its JSON log lines in a file."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "worker", *args], env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{") and f'"{name}"' in line:
                with_event = json.loads(line)
                if with_event.get("event") == name:
                    found.append(with_event)
        return found

    def kill_tree(self) -> list[int]:
        """SIGKILL the worker and every descendant (work horse, scheduler): a machine dying.
        A process group is not enough: RQ's work horse calls setpgrp()."""
        tree = [psutil.Process(self.proc.pid)]
        tree += tree[0].children(recursive=True)
        for p in tree:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        self.proc.wait(10)
        return [p.pid for p in tree]

    def stop(self) -> None:
        if self.proc.poll() is None:
            with_tree = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
            self.proc.kill()
            self.proc.wait(10)
            for p in with_tree[1:]:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass


@pytest.fixture()
def workers() -> Iterator[list[WorkerProc]]:
    started: list[WorkerProc] = []
    try:
        yield started
    finally:
        for w in started:
            w.stop()


def test_a_job_whose_worker_was_killed_is_recovered_in_seconds_and_run_once(
        system: System, tmp_path: Path, workers: list[WorkerProc]) -> None:
    # Retries 1 s apart (production: 10 s) and contact locks of 2 s (production: 30 s): the
    # parts of recovery that are not the reaper's are shortened, so the test measures the reaper.
    settings, config = _settings(system.redis_url, tmp_path, retry_intervals_s=[1, 1], lock_ttl_s=2)
    env = dict(os.environ, REDIS_URL=system.redis_url, HUBSPOT_BASE_URL=system.base, HUBSPOT_ACCESS_TOKEN=APP_TOKEN,
               HUBSPOT_APP_ID=APP_ID, LIFECYCLE_CONFIG=str(config), PYTHONUNBUFFERED="1")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    system.session.post(f"{system.base}/_sandbox/webhooks/pause", timeout=10).raise_for_status()
    cid = system.rep_create_contact(email="killed@ex.test", hubspotscore=150)
    # The job's first batch read is held 6 s by the sandbox: the worker is killed inside it.
    system.session.post(f"{system.base}/_sandbox/faults", timeout=10, json={"rules": [
        {"method": "POST", "path": "contacts/batch/read", "status": None, "latency_ms": 6000, "count": 1}]}
                        ).raise_for_status()
    doomed = WorkerProc(env, tmp_path / "doomed.log")
    workers.append(doomed)
    doomed_name = f"lifecycle-{doomed.proc.pid}"
    _wait("the first worker to register", lambda: bool(system.conn.exists(f"rq:worker:{doomed_name}")), 20)
    job = enqueue_payload(make_deps(dataclasses.replace(settings, hubspot_base_url=system.base), system.conn),
                          {"v": 1, "portal_id": 62515, "source": "reconcile", "contacts": {cid: []}})
    _wait("the job running", lambda: _status(system.conn, job.id) == "started", 20)
    assert system.conn.hget(Job.key_for(job.id), "worker_name") == doomed_name.encode()

    port = _free_port()
    rescuer = WorkerProc(env, tmp_path / "rescuer.log", "--processes", "2", "--metrics-port", str(port))
    workers.append(rescuer)
    _wait("the second worker's reaper", lambda: bool(rescuer.events("reaper_started")), 20)
    assert _status(system.conn, job.id) == "started"
    killed = doomed.kill_tree()
    assert len(killed) >= 2, "the work horse was not among the killed"
    detected = _wait("the abandoned job detected", lambda: _status(system.conn, job.id) != "started", 10)
    recovered = _wait("the job finished", lambda: _status(system.conn, job.id) == "finished", 20) + detected
    print(f"recovery after SIGKILL: detected {detected:.1f} s, finished {recovered:.1f} s")

    (event,) = rescuer.events("abandoned_job_recovered")
    assert (event["job_id"], event["reason"], event["outcome"]) == (job.id, "pid_dead", "retry_scheduled")
    assert event["worker"] == doomed_name
    assert detected < 3, f"detected after {detected:.1f} s"
    # 1 s retry interval, then the scheduler: the dead worker's lock on it holds for up to 61 s,
    # so the reaper enqueues the retry once it is 5 s overdue.
    assert recovered < 12, f"finished after {recovered:.1f} s"
    contact = system.contact(cid)
    assert (contact["contact_status"], contact["contact_milestone"]) == ("mql", "assigned")
    tasks = [t for t in system.objects("tasks") if "New MQL" in (t["properties"].get("hs_task_subject") or "")]
    assert len(tasks) == 1, tasks
    assert not system.conn.zcard("rq:wip:hubspot") and not system.conn.zcard("rq:failed:hubspot")
    metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'lifecycle_reaper_actions_total{action="abandoned"} 1.0' in metrics
    assert 'lifecycle_reaper_actions_total{action="overdue_enqueued"}' in metrics

    rescuer.proc.send_signal(signal.SIGTERM)
    assert rescuer.proc.wait(15) == 0, rescuer.log.read_text()[-3000:]
    assert rescuer.events("reaper_started") and not rescuer.events("reaper_error")


# -- replays, at most N -----------------------------------------------------------------------------
def test_a_job_that_keeps_losing_its_worker_is_replayed_at_most_max_replays_times(
        redis_conn: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    settings, _ = _settings(redis_url, tmp_path)
    queue = make_queue(settings, redis_conn)
    job = queue.enqueue(FUNC, {"v": 1, "portal_id": 62515, "contacts": {"1": []}})  # no RQ retries: failed at once
    reaper = Reaper(settings, redis_conn, [queue.name], max_replays=3)
    outcomes = []
    for round_ in range(5):
        _abandon(redis_conn, queue, job.id, f"dead-{round_}", pid=_dead_pid())
        (item,) = reaper.sweep().abandoned
        assert (item.reason, item.worker) == ("pid_dead", f"dead-{round_}")
        outcomes.append(item.outcome)
        queued = [i.decode() for i in redis_conn.lrange(queue.key, 0, -1)]
        assert queued == ([job.id] if item.outcome == "replayed" else []), (round_, queued)
    assert outcomes == ["replayed"] * 3 + ["replay_cap_reached"] * 2
    assert _status(redis_conn, job.id) == "failed"
    assert FailedJobRegistry(queue=queue).get_job_ids() == [job.id]  # for `lifecycle replay`, by a person
    assert 0 < redis_conn.ttl(REPLAYS_KEY.format(job.id)) <= 86_400
    assert not redis_conn.zcard(StartedJobRegistry(queue=queue).key)


def test_a_job_with_retries_left_is_retried_by_rq_not_replayed(redis_conn: redis.Redis, redis_url: str,
                                                               tmp_path: Path) -> None:
    settings, _ = _settings(redis_url, tmp_path, retry_intervals_s=[0])
    queue = make_queue(settings, redis_conn)
    job = enqueue_payload(make_deps(settings, redis_conn), {"v": 1, "portal_id": 62515, "contacts": {"1": []}})
    _abandon(redis_conn, queue, job.id, "gone-worker")  # its hash has expired
    (item,) = Reaper(settings, redis_conn, [queue.name]).sweep().abandoned
    assert (item.reason, item.outcome) == ("worker_expired", "requeued")
    assert [i.decode() for i in redis_conn.lrange(queue.key, 0, -1)] == [job.id]
    assert Job.fetch(job.id, connection=redis_conn, serializer=queue.serializer).retries_left == 0
    assert not redis_conn.exists(REPLAYS_KEY.format(job.id))


def test_a_live_worker_s_job_is_left_alone(redis_conn: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    settings, _ = _settings(redis_url, tmp_path)
    queue = make_queue(settings, redis_conn)
    job = queue.enqueue(FUNC, {"v": 1, "portal_id": 62515, "contacts": {"1": []}})
    _abandon(redis_conn, queue, job.id, "alive-worker", pid=os.getpid())
    assert Reaper(settings, redis_conn, [queue.name]).sweep().abandoned == []
    assert _status(redis_conn, job.id) == "started"
    assert redis_conn.zcard(StartedJobRegistry(queue=queue).key) == 1


# -- several reapers at once ----------------------------------------------------------------------------
def _race(n: int, act: Callable[[int], Any]) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(5)
            results[i] = act(i)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    return results


def test_racing_reapers_recover_each_abandoned_job_once(redis_conn: redis.Redis, redis_url: str,
                                                       tmp_path: Path) -> None:
    settings, _ = _settings(redis_url, tmp_path, retry_intervals_s=[0])
    queue = make_queue(settings, redis_conn)
    deps = make_deps(settings, redis_conn)
    jobs = sorted(enqueue_payload(deps, {"v": 1, "portal_id": 62515, "contacts": {str(i): []}}).id for i in range(20))
    started, held = StartedJobRegistry(queue=queue), _HeldExecutions(queue=queue)
    reapers = [Reaper(settings, redis.Redis.from_url(redis_url), [queue.name]) for _ in range(4)]
    for round_ in range(3):
        for i, job_id in enumerate(jobs):
            redis_conn.hset(Job.key_for(job_id), "retries_left", 1)
            _abandon(redis_conn, queue, job_id, f"gone-{round_}-{i % 3}")
        recovered = [a for r in _race(4, lambda i: reapers[i].sweep().abandoned) for a in r]
        assert sorted(a.job_id for a in recovered) == jobs, "each abandoned job recovered exactly once"
        assert {a.outcome for a in recovered} == {"requeued"}
        assert sorted(i.decode() for i in redis_conn.lrange(queue.key, 0, -1)) == jobs, "each enqueued once"
        assert not redis_conn.zcard(started.key) and not redis_conn.zcard(held.key)


def test_an_entry_held_by_a_reaper_that_died_is_cleaned_up_by_the_next(redis_conn: redis.Redis, redis_url: str,
                                                                      tmp_path: Path) -> None:
    settings, _ = _settings(redis_url, tmp_path, retry_intervals_s=[0])
    queue = make_queue(settings, redis_conn)
    job = enqueue_payload(make_deps(settings, redis_conn), {"v": 1, "portal_id": 62515, "contacts": {"1": []}})
    _abandon(redis_conn, queue, job.id, "gone")
    started, held = StartedJobRegistry(queue=queue), _HeldExecutions(queue=queue)
    (entry,) = redis_conn.zrange(started.key, 0, -1)
    redis_conn.zrem(started.key, entry)  # a reaper claimed it and died before RQ's cleanup ran
    redis_conn.zadd(held.key, {entry: 0})
    (item,) = Reaper(settings, redis_conn, [queue.name]).sweep().abandoned
    assert (item.job_id, item.reason, item.outcome) == (job.id, None, "requeued")
    assert not redis_conn.zcard(held.key)


def test_an_overdue_scheduled_job_is_enqueued_once_by_racing_reapers(redis_conn: redis.Redis, redis_url: str,
                                                                      tmp_path: Path) -> None:
    settings, _ = _settings(redis_url, tmp_path)
    queue = make_queue(settings, redis_conn)
    registry = ScheduledJobRegistry(queue=queue)
    jobs = []
    for i in range(30):
        job = queue.create_job(FUNC, args=({"v": 1, "portal_id": 62515, "contacts": {str(i): []}},))
        job.save()
        late = 2.0 if i == 0 else 30.0  # the first is late, but by less than 5 s: the scheduler's
        registry.schedule(job, datetime.now(UTC) - timedelta(seconds=late))
        jobs.append(job)
    reapers = [Reaper(settings, redis.Redis.from_url(redis_url), [queue.name]) for _ in range(4)]
    swept = _race(4, lambda i: reapers[i].sweep().enqueued)
    enqueued = [job_id for s in swept for job_id, _ in s]
    assert len(enqueued) == len(set(enqueued))
    # The same again, under no lock: the WATCH/MULTI move alone decides.
    due = redis_conn.zrangebyscore(registry.key, 0, time.time() - 5, withscores=True)
    enqueued += [job_id for s in _race(4, lambda i: reapers[i]._enqueue_overdue(queue, registry, due, time.time()))
                 for job_id, _ in s]
    assert sorted(enqueued) == sorted(j.id for j in jobs[1:])
    assert all(overdue >= 30 for s in swept for _, overdue in s)
    queued = [i.decode() for i in redis_conn.lrange(queue.key, 0, -1)]
    assert sorted(queued) == sorted(j.id for j in jobs[1:]), "each overdue job enqueued exactly once"
    assert all(_status(redis_conn, j.id) == "queued" for j in jobs[1:])
    assert registry.get_job_ids() == [jobs[0].id]


# -- Redis outages -----------------------------------------------------------------------------------
def test_the_reaper_thread_rides_out_a_redis_outage_and_logs_it_once(
        private_redis: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings, _ = _settings(private_redis.url, tmp_path)
    conn = redis.Redis.from_url(private_redis.url, socket_timeout=1, socket_connect_timeout=1)
    configure_logging()
    lines: list[dict[str, Any]] = []

    def logged(event: str) -> list[dict[str, Any]]:
        lines.extend(json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{"))
        return [line for line in lines if line.get("event") == event]

    reaper = Reaper(settings, conn, ["hubspot"], interval_s=0.05).start()
    try:
        _wait("the reaper to start", lambda: bool(logged("reaper_started")), 5)
        private_redis.stop()
        time.sleep(1.0)  # some 20 passes fail meanwhile
        private_redis.start()
        _wait("the reaper to see Redis back", lambda: bool(logged("reaper_redis_back")), 10)
        assert reaper._thread is not None and reaper._thread.is_alive()
        assert len(logged("reaper_redis_down")) == 1 and len(logged("reaper_redis_back")) == 1
        assert not logged("reaper_error")
    finally:
        t0 = time.monotonic()
        reaper.stop()
        assert time.monotonic() - t0 < 2
    assert not reaper._thread.is_alive()


def test_the_reaper_is_off_when_the_config_says_so(redis_url: str, tmp_path: Path) -> None:
    from worker.cli_worker import _start_reaper

    settings, _ = _settings(redis_url, tmp_path, reaper={"enabled": False})
    assert _start_reaper(settings, ["hubspot"]) is None
