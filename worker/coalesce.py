"""Coalescing: a job takes over other queued jobs so a burst costs few HubSpot calls.

When a job starts, it atomically moves queued job ids from the RQ queue list onto its own
list `lc:absorbed:<job id>` (LMOVE: each id is taken by exactly one job) until it holds
about `max_contacts` contacts, and processes their events together with its own. The
list outlives a crash: when the job is retried, replayed or found abandoned, it processes
the same absorbed jobs again (safe: level-triggered rules, idempotent effects). After a
success the absorbed jobs and the list are deleted.

Under a burst, a job that started while the queue was still growing first waits (at most
`worker.coalesce_wait_s`, polling every `GROWTH_POLL_S`) until it stops growing, so it takes
the whole burst rather than its first trickle; at a low rate the queue does not grow during
the first poll, and the job goes on after that one poll (0.2 s). One job at a time waits and
absorbs (`lc:absorbing:<queue>`): two jobs taking turns on the queue would each end up with
events of every contact, and fight over the same contacts' locks (docs/benchmarks.md).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import structlog
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.queue import Queue

from worker.deps import Deps

log = structlog.get_logger(__name__)
JOB_FUNC = "worker.jobs.handle_events"
GROWTH_POLL_S = 0.2  # how often a waiting job looks at the queue length
QUIET_POLLS = 2  # after growth, polls in a row without growth that end the wait


def absorbed_key(job_id: str) -> str:
    return f"lc:absorbed:{job_id}"


def _idents(payload: dict[str, Any]) -> set[str]:
    """The distinct contacts (by id) and recipients (by address) a payload is about."""
    return {f"c:{c}" for c in payload.get("contacts") or {}} | {f"e:{e}" for e in payload.get("emails") or {}}


def absorb(deps: Deps, job: Job, queue: Queue, own: dict[str, Any], max_contacts: int
           ) -> tuple[list[str], list[dict[str, Any]]]:
    """(absorbed job ids, their payloads): the ones taken before (on a rerun) or newly taken."""
    key = absorbed_key(job.id)
    conn = deps.redis
    ids = [i.decode() for i in conn.lrange(key, 0, -1)]
    first_run = not conn.exists(f"{key}:done-absorbing")
    seen = _idents(own)  # distinct: many jobs of a burst are about the same contacts
    payloads = []
    for jid in ids:
        payload = _payload(deps, jid, queue)
        if payload is not None:
            payloads.append(payload)
            seen |= _idents(payload)
    ttl = deps.settings.worker.failure_ttl_s
    while first_run and len(seen) < max_contacts:
        raw = conn.lmove(queue.key, key, "LEFT", "RIGHT")
        if raw is None:
            break
        jid = raw.decode()
        payload = _payload(deps, jid, queue)
        if payload is None or conn.exists(absorbed_key(jid)):
            # Not ours to take: another function, or a rerun (retry, abandoned, replay) that carries
            # absorbed jobs of its own, which only it processes. Back to the front of the queue.
            conn.lrem(key, 1, jid)
            conn.lpush(queue.key, jid)
            break
        conn.expire(key, ttl)
        conn.expire(Job.key_for(jid), ttl)  # queued jobs have no TTL; absorbed ones must not leak
        ids.append(jid)
        payloads.append(payload)
        seen |= _idents(payload)
    conn.set(f"{key}:done-absorbing", "1", ex=ttl)
    if len(ids) > 0:
        log.info("jobs_coalesced", absorbed=len(ids), contacts=len(seen))
    return ids, payloads


def absorbing_key(queue: Queue) -> str:
    return f"lc:absorbing:{queue.name}"


def wait_and_absorb(deps: Deps, job: Job, queue: Queue, own: dict[str, Any], max_contacts: int, *,
                    sleep: Callable[[float], None] = time.sleep) -> tuple[list[str], list[dict[str, Any]]]:
    """`absorb`, after waiting for a growing queue to settle; one job at a time does this."""
    if deps.redis.exists(f"{absorbed_key(job.id)}:done-absorbing"):
        return absorb(deps, job, queue, own, max_contacts)  # a rerun: takes nothing new, no wait
    wait_s = deps.settings.worker.coalesce_wait_s
    token = uuid.uuid4().hex
    key = absorbing_key(queue)
    deadline = time.monotonic() + wait_s + 10.0
    while not deps.redis.set(key, token, nx=True, px=int((wait_s + 30) * 1000)):
        if time.monotonic() > deadline:
            break  # the holder died or is slow: absorbing without it is safe (LMOVE), just less tidy
        sleep(GROWTH_POLL_S)
    try:
        waited = wait_for_growth(deps, queue, wait_s, sleep=sleep)
        if waited:
            log.info("coalesce_waited", waited_s=round(waited, 2), queued=deps.redis.llen(queue.key))
        return absorb(deps, job, queue, own, max_contacts)
    finally:
        _release(deps, key, token)


def wait_for_growth(deps: Deps, queue: Queue, max_wait_s: float, *,
                    sleep: Callable[[float], None] = time.sleep) -> float:
    """Wait while the queue grows, at most `max_wait_s`; returns the seconds waited.

    It looks once, one poll later: at a low rate the queue does not grow in that time and the
    job goes on (one poll of latency); in a burst it does, and the job waits for the rest. Once
    it has grown, it must stay still for `QUIET_POLLS` polls in a row: a loaded web process can
    pause for a poll in the middle of a burst.
    """
    before = deps.redis.llen(queue.key)
    started = time.monotonic()
    if max_wait_s <= 0:
        return 0.0
    grew, still = False, 0
    while time.monotonic() - started < max_wait_s:
        sleep(min(GROWTH_POLL_S, max(0.0, max_wait_s - (time.monotonic() - started))))
        now = deps.redis.llen(queue.key)
        if now > before:
            grew, still = True, 0
        else:
            still += 1
            if still >= (QUIET_POLLS if grew else 1):
                break
        before = now
    return time.monotonic() - started


_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


def _release(deps: Deps, key: str, token: str) -> None:
    deps.redis.eval(_RELEASE, 1, key, token)


def _payload(deps: Deps, job_id: str, queue: Queue) -> dict[str, Any] | None:
    try:
        job = Job.fetch(job_id, connection=deps.redis, serializer=queue.serializer)
    except NoSuchJobError:
        return None
    if job.func_name != JOB_FUNC or not job.args or not isinstance(job.args[0], dict):
        return None
    return job.args[0]


def finish(deps: Deps, job_id: str, absorbed: list[str]) -> None:
    """After success: delete the absorbed jobs and the bookkeeping."""
    pipe = deps.redis.pipeline(transaction=False)
    for jid in absorbed:
        pipe.delete(Job.key_for(jid))
    key = absorbed_key(job_id)
    pipe.delete(key, f"{key}:done-absorbing")
    pipe.execute()


def absorbed_payloads(deps: Deps, job_id: str, queue: Queue) -> list[dict[str, Any]]:
    """Payloads a failed job had absorbed (for `lifecycle failed show` / replay --dry-run)."""
    ids = [i.decode() for i in deps.redis.lrange(absorbed_key(job_id), 0, -1)]
    return [p for p in (_payload(deps, jid, queue) for jid in ids) if p is not None]
