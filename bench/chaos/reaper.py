"""Abandoned jobs: measuring RQ's own recovery, and a faster reaper (a prototype).

RQ 3 finds a job abandoned by a killed worker only when both
- its StartedJobRegistry entry has expired: the work horse's last heartbeat + ttl + 60 s,
  ttl = min(job timeout, job_monitoring_interval=30 s) + 60 s, i.e. ~150 s, and
- some worker runs its registry maintenance: at start, then every 10 minutes per worker
  (`maintenance_interval`, 600 s) — or anyone reads the registry through RQ (`.count`,
  `get_job_ids()`), which runs the same cleanup.
It then retries the job if it has retries left, else moves it to the FailedJobRegistry
(webhook jobs carry no RQ `Retry`, so: failed, until `lifecycle replay`).

`Reaper` (prototype, run by the chaos driver as a sidecar; the proposal is to run it in
`lifecycle worker` or the scheduler): every second it looks at the executions in the
StartedJobRegistry, and for each whose worker is gone — the worker's hash expired, or it
runs on this host and its pid is dead, or (other hosts) its heartbeat is older than
`stale_after_s` — it expires that entry and lets RQ's own cleanup handle it, then replays
the job if RQ failed it (safe: level-triggered rules, idempotent effects), at most
`max_replays` times per job so a job that kills its worker cannot loop forever.

The same kill also takes RQ's scheduler with it when that worker held the scheduler lock
(the scheduler is a forked child of one worker): the lock expires after 61 s, but the
other workers try to take it over only at their next maintenance (again every 10 min),
and meanwhile every scheduled job — RQ retries with intervals, deferred contacts — waits.
So the reaper also enqueues scheduled jobs that are overdue by more than
`overdue_after_s` (taking each out of the ScheduledJobRegistry with ZREM first, so only
one caller enqueues it), and records how overdue they were.

`RecoveryTracker` measures, for each kill, the time from the SIGKILL to the abandoned job
leaving "started" (detected) and to it being "finished" (recovered).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.queue import Queue
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import parse_composite_key

from bench.chaos.system import QUEUE, ChaosSystem


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Reaper:
    def __init__(self, system: ChaosSystem, *, period_s: float = 1.0, stale_after_s: float = 60.0,
                 max_replays: int = 3, overdue_after_s: float = 5.0) -> None:
        self.system = system
        self.conn = redis.Redis.from_url(system.redis_url, socket_timeout=5, socket_connect_timeout=2)
        self.period_s = period_s
        self.stale_after_s = stale_after_s
        self.max_replays = max_replays
        self.host = socket.gethostname()
        self.overdue_after_s = overdue_after_s
        self.reaped: list[tuple[float, str]] = []
        self.rescheduled: list[tuple[str, float]] = []  # (job id, seconds overdue)
        self.replayed: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._deps: Any = None

    def start(self) -> Reaper:
        self._thread = threading.Thread(target=self._run, daemon=True, name="reaper")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.sweep()
            except redis.RedisError:
                pass  # Redis restarting: next round

    def worker_dead(self, name: str) -> bool:
        data = {k.decode(): v.decode() for k, v in self.conn.hgetall(f"rq:worker:{name}").items()}
        if not data:
            return True
        pid = int(data.get("pid") or 0)
        if data.get("hostname") == self.host and pid:
            return not _pid_alive(pid)
        beat = data.get("last_heartbeat")
        if not beat:
            return False
        try:
            when = datetime.fromisoformat(beat.replace("Z", "+00:00"))
        except ValueError:
            return False
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return (datetime.now(UTC) - when).total_seconds() > self.stale_after_s

    def sweep(self) -> list[str]:
        self.enqueue_overdue()
        return self.reap()

    def enqueue_overdue(self) -> None:
        """Scheduled jobs overdue by more than `overdue_after_s`: no scheduler is running."""
        key = f"rq:scheduled:{QUEUE}"
        now = time.time()
        due = self.conn.zrangebyscore(key, 0, now - self.overdue_after_s, withscores=True)
        if not due:
            return
        queue = Queue(QUEUE, connection=self.conn, serializer=JSONSerializer)
        for raw, score in due:
            job_id = raw.decode()
            if not self.conn.zrem(key, job_id):
                continue  # the scheduler (or another reaper) took it
            try:
                job = Job.fetch(job_id, connection=self.conn, serializer=JSONSerializer)
            except NoSuchJobError:
                continue
            queue._enqueue_job(job, at_front=bool(job.enqueue_at_front))
            self.rescheduled.append((job_id, round(now - score, 1)))

    def reap(self) -> list[str]:
        key = f"rq:wip:{QUEUE}"
        dead: dict[bytes, str] = {}
        for entry in self.conn.zrange(key, 0, -1):
            job_id, _ = parse_composite_key(entry.decode())
            worker = self.conn.hget(f"rq:job:{job_id}", "worker_name")
            if worker and self.worker_dead(worker.decode()):
                dead[entry] = job_id
        if not dead:
            return []
        self.conn.zadd(key, {e: 0 for e in dead}, xx=True)
        StartedJobRegistry(QUEUE, connection=self.conn, serializer=JSONSerializer).cleanup(timestamp=1)
        now = time.monotonic()
        for job_id in dead.values():
            self.reaped.append((now, job_id))
            status = self.conn.hget(f"rq:job:{job_id}", "status")
            if status == b"failed" and self.replayed.get(job_id, 0) < self.max_replays:
                self._replay(job_id)
        return list(dead.values())

    def _replay(self, job_id: str) -> None:
        from worker import ops
        from worker.deps import make_deps
        from worker.errors import ReplayError

        if self._deps is None:
            self._deps = make_deps(self.system.settings(), self.conn)
        try:
            ops.replay_one(self._deps, ops.failed_registry(self._deps), job_id, dry_run=False)
            self.replayed[job_id] = self.replayed.get(job_id, 0) + 1
        except ReplayError:
            pass  # replayed meanwhile by someone else: fine


@dataclass
class Kill:
    at: float                      # monotonic
    worker: str
    job_id: str | None
    detected_s: float | None = None
    recovered_s: float | None = None
    statuses: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"worker": self.worker, "job": self.job_id, "detected_s": self.detected_s,
                "recovered_s": self.recovered_s, "statuses": self.statuses}


class RecoveryTracker:
    """Watch each killed job's status (from its RQ hash) until it is finished."""

    def __init__(self, system: ChaosSystem) -> None:
        self.system = system
        self.kills: list[Kill] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="recovery")
        self._thread.start()

    def kill_busy_worker(self, wait_s: float = 4.0) -> Kill:
        """SIGKILL a worker that is running a job (waiting up to `wait_s` for one), else any worker."""
        deadline = time.monotonic() + wait_s
        busy: dict[str, str] = {}
        while time.monotonic() < deadline:
            busy = self.system.current_jobs()
            if busy:
                break
            time.sleep(0.05)
        if busy:
            worker, job_id = sorted(busy.items())[0]
        else:
            alive = [w for w in self.system.worker_names if self.system.procs.alive(w)]
            worker, job_id = (alive or self.system.worker_names)[0], None
        pids = self.system.kill_worker(worker)
        kill = Kill(time.monotonic(), worker, job_id)
        kill.statuses.append(f"killed pids {pids}")
        if job_id and self.system.job_status(job_id) != "started":
            kill.statuses.append(f"{job_id} {self.system.job_status(job_id)} at the kill (not mid-job)")
            kill.job_id = None
        self.kills.append(kill)
        return kill

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            for k in self.kills:
                if k.job_id is None or k.recovered_s is not None:
                    continue
                status = self.system.job_status(k.job_id) or "gone"
                if k.statuses[-1] != status:
                    k.statuses.append(status)
                elapsed = round(time.monotonic() - k.at, 2)
                if k.detected_s is None and status != "started":
                    k.detected_s = elapsed
                if status in ("finished", "gone"):
                    k.recovered_s = elapsed

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def summary(self) -> dict[str, Any]:
        with_job = [k for k in self.kills if k.job_id]
        rec = sorted(k.recovered_s for k in with_job if k.recovered_s is not None)
        det = sorted(k.detected_s for k in with_job if k.detected_s is not None)
        return {"kills": len(self.kills), "kills_mid_job": len(with_job),
                "unrecovered": sum(1 for k in with_job if k.recovered_s is None),
                "detect_s": {"min": det[0], "max": det[-1]} if det else None,
                "recover_s": {"min": rec[0], "median": rec[len(rec) // 2], "max": rec[-1]} if rec else None,
                "each": [k.as_json() for k in self.kills]}
