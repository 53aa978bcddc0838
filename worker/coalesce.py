"""Coalescing: a job takes over other queued jobs so a burst costs few HubSpot calls.

When a job starts, it atomically moves queued job ids from the RQ queue list onto its own
list `lc:absorbed:<job id>` (LMOVE: each id is taken by exactly one job) until it holds
about `max_contacts` contacts, and processes their events together with its own. The
list outlives a crash: when the job is retried, replayed or found abandoned, it processes
the same absorbed jobs again (safe: level-triggered rules, idempotent effects). After a
success the absorbed jobs and the list are deleted.
"""

from __future__ import annotations

from typing import Any

import structlog
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.queue import Queue

from worker.deps import Deps

log = structlog.get_logger(__name__)
JOB_FUNC = "worker.jobs.handle_events"


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
