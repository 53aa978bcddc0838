"""Coalescing: a job takes over other queued jobs so a burst costs few HubSpot calls.

When a job starts, it atomically moves queued job ids from the RQ queue list onto its own
list `lc:absorbed:<job id>` (LMOVE: each id is taken by exactly one job) until it holds
about `max_contacts` contacts, and processes their events together with its own. The
list outlives a crash: when the job is retried, replayed or found abandoned, it processes
the same absorbed jobs again (safe: level-triggered rules, idempotent effects). After a
success the absorbed jobs and the list are deleted. Jobs are taken `TAKE_BATCH` at a time in
pipelines: a burst is thousands of jobs, and one round trip each would take seconds.

Under a burst a job keeps taking what arrives, looking after `FIRST_LOOK_S` and then every
`GROWTH_POLL_S`, until nothing more arrives for `QUIET_POLLS` looks in a row (0.4 s; or
`worker.coalesce_wait_s` has passed), so it takes the whole burst rather than its first
trickle. At a low rate nothing arrives during the first look, and the job goes on after that
one look (0.2 s). The longest pause inside the benchmark's bursts was 0.12 s (five runs, 2-core
machine); a burst split by a longer one costs a second pass of reads and writes for what came
after it, nothing else. One job at a time does this
(`lc:absorbing:<queue>`): two jobs taking turns on the queue would each end up with events of
every contact, and fight over the same contacts' locks (docs/benchmarks.md). The hold lives
`HOLD_TTL_MS` and is renewed at every batch and look, so a killed holder's lapses in seconds.
"""

from __future__ import annotations

import json
import time
import uuid
import zlib
from collections.abc import Callable
from typing import Any

import msgspec
import structlog
from rq.job import Job
from rq.queue import Queue

from worker.deps import Deps

log = structlog.get_logger(__name__)
JOB_FUNC = "worker.jobs.handle_events"
FIRST_LOOK_S = 0.2  # a coalescing job's first look for newly queued jobs, after this ...
GROWTH_POLL_S = 0.1  # ... and, once some arrive, a look this often ...
QUIET_POLLS = 4  # ... until this many looks in a row find none (0.4 s of quiet)
TAKE_BATCH = 100  # queued jobs moved per pipelined round trip
HANDOVER_BATCH = 8  # handed-over jobs moved per round trip (at most one per waiting worker)
HAND_OVER_POLL_S = 0.05  # how often a job that handed its events over looks for the hold to end
HOLD_TTL_MS = 3000  # the one-at-a-time hold, renewed at every batch and look: a dead holder's lapses fast
Taken = tuple[list[str], list[dict[str, Any]]]  # (absorbed job ids, their payloads)


def absorbed_key(job_id: str) -> str:
    return f"lc:absorbed:{job_id}"


def absorbing_key(queue: Queue) -> str:
    return f"lc:absorbing:{queue.name}"


def handover_key(queue: Queue) -> str:
    return f"lc:handover:{queue.name}"


def _idents(payload: dict[str, Any]) -> set[str]:
    """The distinct contacts (by id) and recipients (by address) a payload is about."""
    return {f"c:{c}" for c in payload.get("contacts") or {}} | {f"e:{e}" for e in payload.get("emails") or {}}


class _Taker:
    """One job's absorbed list: what it took before (on a rerun), and taking more (first run)."""

    def __init__(self, deps: Deps, job: Job, queue: Queue, own: dict[str, Any], max_contacts: int) -> None:
        self.conn, self.queue, self.max = deps.redis, queue, max_contacts
        self.renew: Callable[[], None] = lambda: None  # called at every batch (the hold's keep-alive)
        self.key = absorbed_key(job.id)
        self.handover = handover_key(queue)
        self.ttl = deps.settings.worker.failure_ttl_s
        self.ids = [i.decode() for i in self.conn.lrange(self.key, 0, -1)]
        self.first_run = not self.conn.exists(f"{self.key}:done-absorbing")
        self.stopped = not self.first_run
        self.seen = _idents(own)  # distinct: many jobs of a burst are about the same contacts
        self.payloads: list[dict[str, Any]] = []
        for payload in _payloads(self.conn, self.ids):
            if payload is not None:
                self.payloads.append(payload)
                self.seen |= _idents(payload)

    @property
    def full(self) -> bool:
        return self.stopped or len(self.seen) >= self.max

    def take(self) -> int:
        """Take what is queued now (up to the cap); returns how many jobs were taken."""
        count = 0
        while not self.full:
            self.renew()
            taken = self._take_batch()
            if not taken:
                break
            count += taken
        return count

    def _take_batch(self) -> int:
        pipe = self.conn.pipeline(transaction=False)
        for _ in range(HANDOVER_BATCH):  # jobs that waited for the hold (dequeued before the rest)
            pipe.lmove(self.handover, self.key, "LEFT", "RIGHT")
        for _ in range(TAKE_BATCH):
            pipe.lmove(self.queue.key, self.key, "LEFT", "RIGHT")
        moved = [r.decode() for r in pipe.execute() if r is not None]
        if not moved:
            return 0
        pipe = self.conn.pipeline(transaction=False)
        for jid in moved:
            pipe.hget(Job.key_for(jid), "data")
            pipe.exists(absorbed_key(jid))
        answers = pipe.execute()
        payloads, reruns = [_data_payload(raw) for raw in answers[0::2]], answers[1::2]
        accepted: list[str] = []
        for i, (jid, payload, rerun) in enumerate(zip(moved, payloads, reruns, strict=True)):
            if payload is None or rerun or self.full:
                # Not ours to take: another function, or a rerun (retry, abandoned, replay) that carries
                # absorbed jobs of its own, which only it processes; or past the cap. Back to the front.
                self.stopped = self.stopped or payload is None or bool(rerun)
                self._give_back(moved[i:])
                break
            accepted.append(jid)
            self.payloads.append(payload)
            self.seen |= _idents(payload)
        pipe = self.conn.pipeline(transaction=False)
        pipe.expire(self.key, self.ttl)
        for jid in accepted:
            pipe.expire(Job.key_for(jid), self.ttl)  # queued jobs have no TTL; absorbed ones must not leak
        pipe.execute()
        self.ids += accepted
        return len(accepted)

    def _give_back(self, ids: list[str]) -> None:
        pipe = self.conn.pipeline(transaction=True)
        for jid in ids:
            pipe.lrem(self.key, 1, jid)
        for jid in reversed(ids):  # the first of them ends up at the front, as it was
            pipe.lpush(self.queue.key, jid)
        pipe.execute()

    def done(self) -> Taken:
        self.conn.set(f"{self.key}:done-absorbing", "1", ex=self.ttl)
        if self.ids:
            log.info("jobs_coalesced", absorbed=len(self.ids), contacts=len(self.seen))
        return self.ids, self.payloads


def absorb(deps: Deps, job: Job, queue: Queue, own: dict[str, Any], max_contacts: int) -> Taken:
    """(absorbed job ids, their payloads): the ones taken before (on a rerun) or newly taken."""
    taker = _Taker(deps, job, queue, own, max_contacts)
    taker.take()
    return taker.done()


def wait_and_absorb(deps: Deps, job: Job, queue: Queue, own: dict[str, Any], max_contacts: int, *,
                    sleep: Callable[[float], None] = time.sleep, wait_s: float | None = None,
                    hand_over: Callable[[], Job] | None = None) -> Taken | None:
    """`absorb`, going on while jobs keep arriving (module docstring); one job at a time.

    `wait_s` bounds the looks (default `worker.coalesce_wait_s`; 0: take what is queued, no look).
    With `hand_over` (which creates, unsaved, a copy of this job), a job that finds another one
    taking the queue offers it its events: None when that job took them, so this one has nothing
    left to do (`_wait_for_hold`)."""
    taker = _Taker(deps, job, queue, own, max_contacts)
    if not taker.first_run:
        return taker.done()  # a rerun: takes nothing new, no wait
    if taker.ids:
        # A rerun of a job killed while it was taking: the jobs it took are on its list, and only
        # it processes them (other jobs give such a job back untaken). A copy would carry its own
        # events only, and the ones it took would be lost: it waits for the hold instead.
        hand_over = None
    wait_s = deps.settings.worker.coalesce_wait_s if wait_s is None else wait_s
    token, key = uuid.uuid4().hex, absorbing_key(queue)
    if not _wait_for_hold(deps, queue, key, token, wait_s, sleep, hand_over):
        return None
    taker.renew = lambda: _renew(deps, key, token)
    try:
        started = time.monotonic()
        taker.take()
        looks = _keep_taking(taker, started + wait_s, sleep)
        if looks:
            log.info("coalesce_waited", waited_s=round(time.monotonic() - started, 2), looks=looks,
                     absorbed=len(taker.ids))
        return taker.done()
    finally:
        _release(deps, key, token)


def _wait_for_hold(deps: Deps, queue: Queue, key: str, token: str, wait_s: float,
                   sleep: Callable[[float], None], hand_over: Callable[[], Job] | None) -> bool:
    """Take the one-at-a-time hold, waiting while another job has it. False: this job's events
    were handed over (it must not process them), and it holds nothing.

    A job that waits here was dequeued while another job is taking the burst; processed after it,
    it would find its contacts locked by that job and defer them until that job ends (seconds, for
    a whole burst). So, with `hand_over`, a copy of it waits on `lc:handover:<queue>`, a list only
    a job that takes the queue takes from (idle workers would take a copy from the queue itself,
    each to hand it over again). Whoever takes the copy (LMOVE: once) owns those events. This job
    still waits for the hold, so that its worker does not take the next job of the burst; then,
    if the holder stopped taking before the copy, LREM takes it back (atomically too), and this
    job goes on as if nothing had happened. A worker killed in between leaves the copy for the next
    job that takes the queue, and its own job for the reaper: the events are processed twice, which
    is safe."""
    deadline = time.monotonic() + wait_s + 10.0
    copy: str | None = None
    handover = handover_key(queue)
    while not deps.redis.set(key, token, nx=True, px=HOLD_TTL_MS):
        if hand_over is not None:
            if copy is None:
                job = hand_over()
                pipe = deps.redis.pipeline(transaction=True)
                job.save(pipeline=pipe)
                pipe.rpush(handover, job.id)
                pipe.execute()
                copy = job.id
        if time.monotonic() > deadline:
            break  # the holder is slow: absorbing without it is safe (LMOVE), just less tidy
        sleep(HAND_OVER_POLL_S if copy else GROWTH_POLL_S)  # a holder that died lets go within HOLD_TTL_MS
    if copy is None:
        return True
    if deps.redis.lrem(handover, 1, copy):
        deps.redis.delete(Job.key_for(copy))  # taken back: this job carries the events again
        return True
    _release(deps, key, token)  # taken just now
    log.info("job_handed_over", copy=copy)
    return False


def _keep_taking(taker: _Taker, until: float, sleep: Callable[[float], None]) -> int:
    """Look after FIRST_LOOK_S, then every GROWTH_POLL_S, and take what arrived, until nothing
    arrives (at the first look, or QUIET_POLLS times in a row after something did), the cap is
    reached, or `until`; returns the looks."""
    looks, arrived, still = 0, False, 0
    while not taker.full and time.monotonic() < until:
        sleep(min(GROWTH_POLL_S if looks else FIRST_LOOK_S, max(0.0, until - time.monotonic())))
        looks += 1
        if taker.take():
            arrived, still = True, 0
            continue
        still += 1
        if still >= (QUIET_POLLS if arrived else 1):
            break
    return looks


_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"


def _renew(deps: Deps, key: str, token: str) -> None:
    deps.redis.eval(_RENEW, 1, key, token, HOLD_TTL_MS)


def _release(deps: Deps, key: str, token: str) -> None:
    deps.redis.eval(_RELEASE, 1, key, token)


def _payloads(conn: Any, job_ids: list[str]) -> list[dict[str, Any] | None]:
    """Each job's payload (one pipelined read), None for a job that is gone or not ours.

    Only each job's `data` field is read and decoded here, as RQ's `Job.restore` would decode it
    (zlib, then the queue's JSON serializer) but without building the `Job`: a burst is thousands of
    jobs, and `Job.fetch_many` (the whole hash, its dates parsed, stdlib json) cost the coalescing
    job about a third of its CPU while the burst's webhooks were still coming in.
    """
    if not job_ids:
        return []
    pipe = conn.pipeline(transaction=False)
    for jid in job_ids:  # _Taker._take_batch reads the same field with its other questions
        pipe.hget(Job.key_for(jid), "data")
    return [_data_payload(raw) for raw in pipe.execute()]


_DECODE = msgspec.json.Decoder().decode


def _data_payload(raw: bytes | None) -> dict[str, Any] | None:
    """A job's stored `data` ([func, instance, args, kwargs], JSON, zlib-compressed) → its payload."""
    if raw is None:
        return None
    try:
        data = zlib.decompress(raw)
    except zlib.error:
        data = raw  # RQ's own fallback: stored uncompressed
    try:
        decoded = _DECODE(data)  # exact, like stdlib json: integers past 64 bits stay integers (orjson's become floats)
    except msgspec.DecodeError:
        try:  # what msgspec refuses and RQ's JSONSerializer (stdlib json) reads: NaN, Infinity
            decoded = json.loads(data)
        except ValueError:
            return None
    if not isinstance(decoded, list) or len(decoded) != 4:
        return None
    func, _instance, args, _kwargs = decoded
    if func != JOB_FUNC or not isinstance(args, list) or not args or not isinstance(args[0], dict):
        return None
    return args[0]


def finish(deps: Deps, job_id: str, absorbed: list[str]) -> None:
    """After success: delete the absorbed jobs and the bookkeeping."""
    pipe = deps.redis.pipeline(transaction=False)
    for jid in absorbed:
        pipe.delete(Job.key_for(jid))
    key = absorbed_key(job_id)
    pipe.delete(key, f"{key}:done-absorbing")
    pipe.execute()


def absorbed_payloads(deps: Deps, job_id: str) -> list[dict[str, Any]]:
    """Payloads a failed job had absorbed (for `lifecycle failed show` / replay --dry-run)."""
    ids = [i.decode() for i in deps.redis.lrange(absorbed_key(job_id), 0, -1)]
    return [p for p in _payloads(deps.redis, ids) if p is not None]
