"""The abandoned-job reaper: recovers the job of a worker that died mid-job within seconds.

Left to itself, RQ finds such a job only once the job's StartedJobRegistry entry has expired
(about 90 s after the dead worker's last heartbeat) and a worker next runs its maintenance
(every 30 s here): 93-104 s measured (docs/chaos.md, finding 7). `lifecycle worker` runs a
`Reaper` in a daemon thread that, every `worker.reaper.interval_s` (1 s), for each queue:

- declares an execution in the StartedJobRegistry abandoned when its worker is gone: the
  worker's RQ hash has expired, or the worker runs on this host and its pid is dead (and so is
  its work horse's, when it recorded one), or its last heartbeat is older than
  `stale_after_s` (60 s; RQ refreshes it every 30 s);
- takes that entry out of the registry and runs RQ's own cleanup on it, so RQ retries the job
  if it has retries left and fails it otherwise;
- replays a job RQ failed that way (as `lifecycle replay` does: safe, because the rules are
  level-triggered and the effects idempotent, but without giving it its retries back), at most
  `max_replays` times per job within 24 h, counted in `lc:reaper:replays:<job id>`: a job that
  kills its worker runs at most 1 + len(retry_intervals_s) + max_replays times (8), then stays
  in the failed registry for `lifecycle replay`;
- enqueues scheduled jobs (RQ retries, deferred contacts) overdue by more than
  `overdue_after_s` (5 s): the scheduler is a child of one worker and dies with it, and
  another worker takes it over only after its lock expires (up to about 90 s).

Several reapers run at once (one per `lifecycle worker`), and RQ's own maintenance too; each
action happens at most once:
- a reaper acts on a queue only under a short lock (`lc:reaper:lock:<queue>`, 10 s, with a
  token), and checks it still holds it right before RQ's cleanup runs;
- an abandoned entry moves from RQ's registry into the reapers' own
  (`lc:reaper:held:<queue>`) in one script: the one caller whose ZREM removed it has it, and
  RQ's maintenance no longer sees it. An entry a reaper held when it died is cleaned up by the
  next lock holder;
- a scheduled job leaves RQ's ScheduledJobRegistry and enters the queue in one MULTI under
  WATCH, so of several callers (reapers, RQ's scheduler) only one enqueues it.

Just after the reaper's own Redis outage it trusts only dead pids for `stale_after_s`: the
workers could not heartbeat either, and their hashes may have expired while they lived.

Nothing is unpickled: the JSON serializer and `LifecycleJob` everywhere. The thread logs an
outage once, and forks of the worker (RQ's work horse, a pool's workers) wait while it writes
(see `_fork_guard`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
import structlog
from redis.exceptions import RedisError, WatchError
from rq.executions import Execution
from rq.queue import Queue
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import parse_composite_key
from rq.worker import Worker

from worker import metrics
from worker.deps import Deps, make_deps, make_queue
from worker.jobclass import LifecycleJob
from worker.settings import Settings

log = structlog.get_logger(__name__)

REPLAYS_KEY = "lc:reaper:replays:{}"
REPLAYS_TTL_S = 86_400
LOCK_KEY = "lc:reaper:lock:{}"
LOCK_TTL_MS = 10_000          # a pass takes milliseconds; a reaper that dies holding it delays the others this long
HORSE_PID_FIELD = "lc_horse_pid"  # written into the worker's RQ hash by `lifecycle worker` (cli_worker.py)
WATCH_ROUNDS = 5
FORK_WAIT_S = 10.0

# Reasons a worker is gone.
WORKER_EXPIRED = "worker_expired"
PID_DEAD = "pid_dead"
HEARTBEAT_STALE = "heartbeat_stale"
SUPERSEDED = "superseded"  # its process, alive, now runs a newer worker (rebuilt after a Redis outage)

_CLAIM = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
  return 1
end
return 0
"""
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


# -- is the worker gone? ----------------------------------------------------------------------------
def pid_alive(pid: int) -> bool:
    """True while a process with this pid exists on this host and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return not os.path.exists("/proc/self/stat")  # it exited meanwhile (or there is no /proc)
    except OSError:
        return True
    return stat[stat.rfind(b")") + 2:][:1] != b"Z"  # the state follows "(command) "


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def worker_gone(data: Mapping[str, str], *, host: str, now: datetime, stale_after_s: float,
                alive: Callable[[int], bool] = pid_alive, after_outage: bool = False,
                superseded: bool = False) -> str | None:
    """Why the worker whose RQ hash is `data` is gone (`WORKER_EXPIRED`, `PID_DEAD`,
    `SUPERSEDED`, `HEARTBEAT_STALE`), or None while it may be alive.

    `data` is the hash with str fields, empty once it has expired. A worker on this host whose
    pid is alive is not dead by pid; it still is by a stale heartbeat (a reused pid), or when
    `superseded`: a newer worker is registered for the same host and pid, which `lifecycle
    worker` builds when Redis went away under the old one (that one will never finish its job).
    Either way a horse that outlived its worker is left to finish its job first.
    `after_outage`: only pids count, since missing heartbeats and hashes prove nothing
    when Redis itself was away.
    """
    if not data:
        return None if after_outage else WORKER_EXPIRED
    pid = _int(data.get("pid"))
    if pid and data.get("hostname") == host:
        horse = _int(data.get(HORSE_PID_FIELD))
        if not (horse and alive(horse)):  # a horse that outlived its worker finishes its job
            if not alive(pid):
                return PID_DEAD
            if superseded:
                return SUPERSEDED
    if after_outage:
        return None
    beat = _when(data.get("last_heartbeat"))
    if beat is not None and (now - beat).total_seconds() > stale_after_s:
        return HEARTBEAT_STALE
    return None


# -- fork safety --------------------------------------------------------------------------------------
# RQ forks a work horse per job from the thread that also runs this reaper's process. A fork
# while the reaper thread holds a lock (structlog's write lock, stdout's buffer, a metrics
# file's lock) would leave that lock held forever in the child, which would hang on its first
# log line. So the reaper does its logging and acting under `_FORK_GUARD`, and a fork waits
# for it (at most FORK_WAIT_S).
_FORK_GUARD = threading.Lock()
_fork_state = {"registered": False, "taken": False}


def _before_fork() -> None:
    _fork_state["taken"] = _FORK_GUARD.acquire(timeout=FORK_WAIT_S)


def _after_fork() -> None:
    if _fork_state["taken"]:
        _fork_state["taken"] = False
        _FORK_GUARD.release()


def _register_fork_guard() -> None:
    if not _fork_state["registered"]:
        os.register_at_fork(before=_before_fork, after_in_parent=_after_fork, after_in_child=_after_fork)
        _fork_state["registered"] = True


@contextlib.contextmanager
def _fork_guard() -> Iterator[None]:
    with _FORK_GUARD:
        yield


# -- the reaper ---------------------------------------------------------------------------------------
class _HeldExecutions(StartedJobRegistry):
    """Executions a reaper took out of a queue's StartedJobRegistry: RQ's cleanup, our key."""

    key_template = "lc:reaper:held:{0}"


@dataclass
class Abandoned:
    """One abandoned execution and what became of its job."""

    job_id: str
    queue: str
    worker: str | None
    reason: str | None       # why its worker is gone (None: held by a reaper that died)
    outcome: str = ""        # retry_scheduled, requeued, failed, replayed, replay_cap_reached, ...
    replays: int = 0


@dataclass
class Sweep:
    """What one pass did."""

    abandoned: list[Abandoned] = field(default_factory=list)
    enqueued: list[tuple[str, float]] = field(default_factory=list)  # (job id, seconds overdue)


class Reaper:
    """Recovers abandoned jobs and overdue scheduled jobs; `start()` runs it in a thread."""

    def __init__(self, settings: Settings, conn: redis.Redis, queue_names: Sequence[str], *,
                 interval_s: float = 1.0, stale_after_s: float = 60.0, max_replays: int = 3,
                 overdue_after_s: float = 5.0, hostname: str | None = None,
                 alive: Callable[[int], bool] = pid_alive) -> None:
        self.settings = settings
        self.conn = conn
        self.queues = [make_queue(settings, conn, name) for name in queue_names]
        self.interval_s = interval_s
        self.stale_after_s = stale_after_s
        self.max_replays = max_replays
        self.overdue_after_s = overdue_after_s
        self.host = hostname or socket.gethostname()
        self.alive = alive
        self._claim = conn.register_script(_CLAIM)
        self._deps: Deps | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._down_since: float | None = None
        self._trust_pids_only_until = 0.0
        self._last_error: str | None = None

    @classmethod
    def for_worker(cls, settings: Settings, queue_names: Sequence[str]) -> Reaper:
        """The reaper of `lifecycle worker`, as configured in `worker.reaper`, with its own Redis
        connection: timeouts, so a hung socket cannot stall it, and nothing shared with RQ."""
        conn = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
        r = settings.worker.reaper
        return cls(settings, conn, queue_names, interval_s=r.interval_s, stale_after_s=r.stale_after_s,
                   max_replays=r.max_replays, overdue_after_s=r.overdue_after_s)

    # -- the thread ------------------------------------------------------------------------------
    def start(self) -> Reaper:
        _register_fork_guard()
        self._thread = threading.Thread(target=self._run, daemon=True, name="lifecycle-reaper")
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        with _fork_guard():
            log.info("reaper_started", queues=[q.name for q in self.queues], interval_s=self.interval_s,
                     stale_after_s=self.stale_after_s, max_replays=self.max_replays,
                     overdue_after_s=self.overdue_after_s)
        while True:
            try:
                self.sweep()
            except RedisError as exc:
                self._redis_down(exc)
            except Exception as exc:  # a bug must not end the thread; logged once until a pass succeeds
                text = f"{type(exc).__name__}: {exc}"
                if text != self._last_error:
                    self._last_error = text
                    with _fork_guard():
                        log.exception("reaper_error", error=text)
            else:
                self._redis_up()
            if self._stop.wait(self.interval_s):
                return

    def _redis_down(self, exc: RedisError) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            with _fork_guard():
                log.warning("reaper_redis_down", error=str(exc), retry_every_s=self.interval_s)

    def _redis_up(self) -> None:
        self._last_error = None
        if self._down_since is not None:
            down_s = round(time.monotonic() - self._down_since, 1)
            self._down_since = None
            self._trust_pids_only_until = time.monotonic() + self.stale_after_s
            with _fork_guard():
                log.info("reaper_redis_back", down_s=down_s, trusting_pids_only_s=self.stale_after_s)

    # -- one pass --------------------------------------------------------------------------------
    def sweep(self) -> Sweep:
        """One pass over every queue. Raises RedisError when Redis is away."""
        result = Sweep()
        for queue in self.queues:
            started = StartedJobRegistry(queue=queue, job_class=LifecycleJob)
            scheduled = ScheduledJobRegistry(queue=queue, job_class=LifecycleJob)  # type: ignore[no-untyped-call]
            held = _HeldExecutions(queue=queue, job_class=LifecycleJob)
            now = time.time()
            pipe = self.conn.pipeline(transaction=False)
            pipe.zrangebyscore(scheduled.key, 0, now - self.overdue_after_s, withscores=True)
            pipe.zrange(started.key, 0, -1)
            pipe.zcard(held.key)
            overdue, running, leftover = pipe.execute()
            dead = self.dead_executions([_text(e) for e in running])
            if not (overdue or dead or leftover):
                continue
            with _fork_guard(), self._queue_lock(queue) as lock:
                if lock is None:
                    continue  # another reaper is on it right now
                result.enqueued += self._enqueue_overdue(queue, scheduled, overdue, now)
                result.abandoned += self._reap(queue, started, held, dead, lock=lock)
        return result

    def dead_executions(self, entries: Sequence[str]) -> dict[str, tuple[str, str]]:
        """The StartedJobRegistry entries (job id:execution id) whose worker is gone:
        entry -> (worker name, reason). Entries whose worker is unknown are RQ's to expire."""
        if not entries:
            return {}
        pipe = self.conn.pipeline(transaction=False)
        for entry in entries:
            job_id, execution_id = parse_composite_key(entry)
            pipe.hget(Execution(execution_id, job_id, self.conn).key, "worker_name")
            pipe.hget(LifecycleJob.key_for(job_id), "worker_name")
        names = pipe.execute()
        owners: dict[str, str] = {}
        for i, entry in enumerate(entries):
            name = names[2 * i] or names[2 * i + 1]  # the execution's own record, else the job's
            if name:
                owners[entry] = name.decode()
        workers = sorted(set(owners.values()))
        pipe = self.conn.pipeline(transaction=False)
        for name in workers:
            pipe.hgetall(Worker.redis_worker_namespace_prefix + name)
        now = datetime.now(UTC)
        after_outage = time.monotonic() < self._trust_pids_only_until
        hashes = [{k.decode(): v.decode(errors="replace") for k, v in raw.items()} for raw in pipe.execute()]
        running = self._workers_by_process()
        verdicts: dict[str, str | None] = {}
        for name, data in zip(workers, hashes, strict=True):
            newer = running.get((data.get("hostname", ""), data.get("pid", ""), data.get("birth", "")))
            verdicts[name] = worker_gone(data, host=self.host, now=now, stale_after_s=self.stale_after_s,
                                         alive=self.alive, after_outage=after_outage, superseded=bool(newer))
        return {entry: (name, reason) for entry, name in owners.items() if (reason := verdicts[name])}

    def _workers_by_process(self) -> dict[tuple[str, str, str], bool]:
        """(hostname, pid, birth) of every registered worker of this host -> whether a worker
        born later is registered for the same host and pid."""
        names = [_text(k) for k in self.conn.smembers(Worker.redis_workers_keys)]
        pipe = self.conn.pipeline(transaction=False)
        for key in names:
            pipe.hmget(key, "hostname", "pid", "birth")
        rows = [tuple(_text(v) if v else "" for v in row) for row in pipe.execute()]
        births: dict[tuple[str, str], list[str]] = {}
        for host, pid, birth in rows:
            if host == self.host and pid:
                births.setdefault((host, pid), []).append(birth)
        return {(host, pid, birth): birth < max(all_births)
                for (host, pid), all_births in births.items() for birth in all_births}

    @contextlib.contextmanager
    def _queue_lock(self, queue: Queue) -> Iterator[tuple[str, str] | None]:
        """(key, token) while this reaper holds the queue's lock, None when another one does."""
        key, token = LOCK_KEY.format(queue.name), uuid.uuid4().hex
        taken = bool(self.conn.set(key, token, nx=True, px=LOCK_TTL_MS))
        try:
            yield (key, token) if taken else None
        finally:
            if taken:
                with contextlib.suppress(RedisError):  # it expires anyway
                    self.conn.eval(_RELEASE, 1, key, token)

    # -- abandoned executions ------------------------------------------------------------------------
    def _reap(self, queue: Queue, started: StartedJobRegistry, held: _HeldExecutions,
              dead: Mapping[str, tuple[str, str]], *, lock: tuple[str, str]) -> list[Abandoned]:
        found: dict[str, Abandoned] = {}
        for entry, (worker, reason) in dead.items():
            job_id = parse_composite_key(entry)[0]
            if job_id in found:
                continue  # one execution per job at a time; the next pass takes another
            if self._claim(keys=[started.key, held.key], args=[entry]):  # only one caller removes it
                found[job_id] = Abandoned(job_id, queue.name, worker, reason)
        entries = [_text(e) for e in self.conn.zrange(held.key, 0, -1)]  # ours, and any a dead reaper left
        if not entries:
            return []
        for entry in entries:
            job_id = parse_composite_key(entry)[0]
            found.setdefault(job_id, Abandoned(job_id, queue.name, None, None))
        ids = list(found)
        before = self._statuses(ids)
        key, token = lock
        if self.conn.get(key) != token.encode():
            return []  # this pass took too long and lost the lock: the next holder cleans up
        held.cleanup(timestamp=1)  # RQ's own handling: retry if retries are left, else failed
        after = self._statuses(ids)
        reaped = []
        for job_id, item in found.items():
            if before[job_id] != "started":  # finished or requeued meanwhile: only the entry went
                log.info("abandoned_entry_dropped", job_id=job_id, queue=queue.name, status=before[job_id])
                continue
            item.outcome = {"scheduled": "retry_scheduled", "queued": "requeued"}.get(after[job_id] or "",
                                                                                     after[job_id] or "gone")
            if item.outcome == "failed":
                self._replay(queue, item)
            metrics.REAPER.labels(action="abandoned").inc()
            level = log.error if item.outcome == "replay_cap_reached" else log.warning
            level("abandoned_job_recovered", job_id=job_id, queue=queue.name, worker=item.worker,
                  reason=item.reason or "held_by_a_dead_reaper", outcome=item.outcome, replays=item.replays,
                  max_replays=self.max_replays)
            reaped.append(item)
        return reaped

    def _statuses(self, job_ids: Sequence[str]) -> dict[str, str | None]:
        pipe = self.conn.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(LifecycleJob.key_for(job_id), "status")
        return {job_id: raw.decode() if raw else None for job_id, raw in zip(job_ids, pipe.execute(), strict=True)}

    def _replay(self, queue: Queue, item: Abandoned) -> None:
        """Put a job RQ failed as abandoned back on its queue, up to `max_replays` times."""
        from worker import ops
        from worker.errors import ReplayError

        if self.max_replays <= 0:
            return
        key = REPLAYS_KEY.format(item.job_id)
        pipe = self.conn.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, REPLAYS_TTL_S)
        count = int(pipe.execute()[0])
        item.replays = min(count, self.max_replays)
        if count > self.max_replays:
            item.outcome = "replay_cap_reached"
            metrics.REAPER.labels(action="replay_cap_reached").inc()
            return
        if self._deps is None:
            self._deps = make_deps(self.settings, self.conn)
        try:
            ops.replay_one(self._deps, FailedJobRegistry(queue=queue, job_class=LifecycleJob), item.job_id,
                           dry_run=False, fresh_retries=False)  # its retries were spent: one more run
        except ReplayError as exc:  # someone replayed or purged it meanwhile
            item.outcome = f"failed ({exc})"
            return
        item.outcome = "replayed"
        metrics.REAPER.labels(action="replayed").inc()

    # -- overdue scheduled jobs -------------------------------------------------------------------------
    def _enqueue_overdue(self, queue: Queue, scheduled: ScheduledJobRegistry, due: Sequence[tuple[bytes, float]],
                         now: float) -> list[tuple[str, float]]:
        done = []
        for raw, score in due:
            job_id = raw.decode()
            job = LifecycleJob.fetch_many([job_id], connection=self.conn, serializer=JSONSerializer)[0]
            if job is None:
                self.conn.zrem(scheduled.key, job_id)  # as RQ's scheduler does with a missing job
                continue
            if getattr(job, "has_rate_limit", False):
                continue  # RQ's scheduler enqueues those through their rate limit
            if not self._move_scheduled(queue, scheduled, job):
                continue  # the scheduler or another reaper took it
            overdue_s = round(now - score, 1)
            done.append((job_id, overdue_s))
            metrics.REAPER.labels(action="overdue_enqueued").inc()
            log.warning("overdue_job_enqueued", job_id=job_id, queue=queue.name, overdue_s=overdue_s)
        return done

    def _move_scheduled(self, queue: Queue, scheduled: ScheduledJobRegistry, job: Any) -> bool:
        """Move `job` from the ScheduledJobRegistry onto its queue in one MULTI, only while it is
        still scheduled (WATCH): two callers never both enqueue it."""
        at_front = job.should_enqueue_at_front() if hasattr(job, "should_enqueue_at_front") \
            else bool(job.enqueue_at_front)
        queue.get_redis_server_version()  # cached now: enqueueing asks for it, outside the MULTI
        for _ in range(WATCH_ROUNDS):
            try:
                with self.conn.pipeline(transaction=True) as pipe:
                    pipe.watch(scheduled.key)  # type: ignore[no-untyped-call]
                    if pipe.zscore(scheduled.key, job.id) is None:
                        return False
                    pipe.multi()
                    pipe.zrem(scheduled.key, job.id)
                    queue._enqueue_job(job, pipeline=pipe, at_front=at_front)
                    pipe.execute()
                    return True
            except WatchError:
                continue  # the registry changed (another job scheduled): look again
        return False
