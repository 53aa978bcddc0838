"""Failed jobs and the worker's health, for on-call: list, show, replay, purge, status.

The logic behind `lifecycle failed …`, `lifecycle replay` and `lifecycle status`; the CLI
(`worker/cli_ops.py`) only parses and prints. A failed job carries the jobs it had absorbed
(`lc:absorbed:<id>`, see coalesce.py): they are counted, shown, replayed and purged with it.
rq and redis errors are translated here, at the boundary, into `ReplayError`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from redis.client import Pipeline
from redis.exceptions import RedisError, WatchError
from rq import Worker
from rq.exceptions import DeserializationError, NoSuchJobError
from rq.job import Job
from rq.queue import Queue
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.results import Result

from rules.model import ActionType, Contact, Decision
from worker import coalesce, effects
from worker.deps import Deps
from worker.errors import HubSpotError, ReplayError
from worker.process import Inbox, plan_inbox
from worker.redis_health import redis_findings

RECONCILE_LAST_KEY = "lc:reconcile:last"
LOCK_TTL_S = 30  # a replay or purge of one job holds its lock for milliseconds; the TTL covers a crash
WATCH_ROUNDS = 5  # the failed registry changes whenever any job fails: retry the move a few times
_LEDGER_ACTIONS = (ActionType.CREATE_TASK, ActionType.UNSUBSCRIBE_ALL)  # effects.py skips these by ledger
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


@dataclass
class FailedJob:
    """One failed job as `lifecycle failed list` shows it (absorbed jobs included in the counts)."""

    id: str
    failed_at: datetime | None
    contacts: int
    events: int
    error: str  # the last line of the traceback
    attempts: int  # runs that ended in the failed registry (1, plus one per replay that failed again)
    retries: int  # RQ retries used before the last failure
    absorbed: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["failed_at"] = self.failed_at.isoformat() if self.failed_at else None
        return data


# -- reading failed jobs ----------------------------------------------------------------------------
def failed_registry(deps: Deps) -> FailedJobRegistry:
    return FailedJobRegistry(queue=deps.queue())


def list_failed(deps: Deps, since_s: float | None = None, error: str | None = None) -> list[FailedJob]:
    """Failed jobs, oldest first; `since_s` keeps those failed in the last `since_s` seconds,
    `error` those whose one-line error contains the text (case-insensitive)."""
    registry = failed_registry(deps)
    queue = deps.queue()
    ids = registry.get_job_ids()
    scores = dict(cast(list[tuple[bytes, float]], deps.redis.zrange(registry.key, 0, -1, withscores=True)))
    jobs = Job.fetch_many(ids, connection=deps.redis, serializer=queue.serializer)
    found = []
    for job_id, job in zip(ids, jobs, strict=True):
        if job is None:
            continue
        item = _summary(deps, queue, job, scores.get(job_id.encode()))
        if since_s is not None and (item.failed_at is None or item.failed_at.timestamp() < time.time() - since_s):
            continue
        if error and error.lower() not in item.error.lower():
            continue
        found.append(item)
    return sorted(found, key=lambda f: f.failed_at or datetime.min.replace(tzinfo=UTC))


def _summary(deps: Deps, queue: Queue, job: Job, score: float | None) -> FailedJob:
    payloads = [p for p in [_own_payload(job)] if p] + coalesce.absorbed_payloads(deps, job.id)
    inbox = Inbox.of(payloads)
    failed_results = _failed_results(job)
    error = _error_text(job, failed_results)
    retries = max(0, len(job.retry_intervals or []) - (job.retries_left or 0)) if job.retry_intervals else 0
    return FailedJob(id=job.id, failed_at=_failed_at(job, score, deps), contacts=inbox.size,
                     events=_events(inbox), error=_last_line(error), attempts=max(1, len(failed_results)),
                     retries=retries, absorbed=_absorbed_ids(deps, job.id))


def show_failed(deps: Deps, job_id: str) -> dict[str, Any]:
    """A failed job in full: its events (own and absorbed), the whole error, and the current
    lifecycle values of its contacts, read from HubSpot in one batch read."""
    registry = failed_registry(deps)
    queue = deps.queue()
    job = _fetch(deps, queue, job_id)
    score = deps.redis.zscore(registry.key, job_id)
    summary = _summary(deps, queue, job, score)
    payloads = {job_id: _own_payload(job) or {}}
    payloads |= {jid: p for jid in summary.absorbed if (p := _absorbed_payload(deps, queue, jid)) is not None}
    current, current_error = _current_values(deps, Inbox.of(payloads.values()))
    return {**summary.as_json(), "in_failed_registry": score is not None,
            "error_full": _error_text(job, _failed_results(job)),
            "event_list": [_event_row(jid, bucket, ident, raw) for jid, p in payloads.items()
                       for bucket in ("contacts", "emails", "companies")
                       for ident, raws in (p.get(bucket) or {}).items() for raw in raws],
            "current": current, "current_error": current_error}


def _current_values(deps: Deps, inbox: Inbox) -> tuple[dict[str, dict[str, Any] | None], str | None]:
    c = deps.settings.policy.contact
    names = [c.email, c.status, c.milestone, c.reason, c.owner]
    try:
        ids = list(inbox.contacts)
        if inbox.emails:  # email events name an address: resolve it, as the worker does
            ids += [cid for cid in deps.hubspot.find_contacts_by_email(inbox.emails).values() if cid not in ids]
        rows = deps.hubspot.read_objects("contacts", ids, names) if ids else {}
    except HubSpotError as exc:  # the outage that failed the job may still be on: show the rest
        return {}, str(exc)
    return {cid: {n: (rows[cid].get("properties") or {}).get(n) for n in names} if cid in rows else None
            for cid in ids}, None


def _event_row(job_id: str, bucket: str, ident: str, raw: dict[str, Any]) -> dict[str, Any]:
    kind = raw.get("subscriptionType") or raw.get("type") or "?"
    occurred = raw.get("occurredAt") or raw.get("created")
    return {"job": job_id, "bucket": bucket, "id": ident, "type": kind,
            "property": raw.get("propertyName"), "value": raw.get("propertyValue"),
            "source": raw.get("changeSource") or raw.get("sourceType"),
            "occurred_at": _iso_ms(occurred) if isinstance(occurred, int) else occurred}


# -- replay -------------------------------------------------------------------------------------------
def replay_one(deps: Deps, registry: FailedJobRegistry, job_id: str, *, dry_run: bool,
               fresh_retries: bool = True) -> str:
    """Move one failed job back onto its queue, keeping its id (so its absorbed jobs stay with
    it), or with `dry_run` describe what it would write now and change nothing. The job gets
    its RQ retries back unless `fresh_retries` is False (the reaper's replays: worker/reaper.py).

    The move happens once or not at all: under a per-job lock, a WATCH on the failed registry
    and one MULTI that removes the entry and enqueues the job. Raises ReplayError.
    """
    queue = Queue(registry.name, connection=deps.redis, serializer=registry.serializer)
    if dry_run:
        job = _fetch(deps, queue, job_id)
        if deps.redis.zscore(registry.key, job_id) is None:
            raise ReplayError(f"job {job_id}: not in the failed registry (already replayed or purged)")
        return _plan_text(deps, queue, job)
    with _job_lock(deps, job_id):
        job = _fetch(deps, queue, job_id)  # under the lock: nobody else changes it now

        def requeue(pipe: Pipeline) -> None:
            job.started_at = job.ended_at = None
            job._exc_info = ""  # as FailedJobRegistry.requeue does; the error stays in the job's results
            if job.retry_intervals and fresh_retries:  # a replay is a fresh start: give it its retries back
                job.retries_left = len(job.retry_intervals)
            pipe.zrem(registry.key, job_id)
            queue.enqueue_job(job, pipeline=pipe)

        _while_failed(deps, registry, job_id, requeue)
    absorbed = len(_absorbed_ids(deps, job_id))
    return "requeued" + (f" with {absorbed} absorbed job{'s' * (absorbed != 1)}" if absorbed else "")


def _while_failed(deps: Deps, registry: FailedJobRegistry, job_id: str, act: Callable[[Pipeline], None]) -> None:
    """Run `act`'s commands in one MULTI/EXEC, only while `job_id` is in the failed registry
    (WATCH): two callers never both act, and a crash leaves the job either here or moved."""
    for _ in range(WATCH_ROUNDS):
        try:
            with deps.redis.pipeline(transaction=True) as pipe:
                pipe.watch(registry.key)  # type: ignore[no-untyped-call]
                if pipe.zscore(registry.key, job_id) is None:
                    raise ReplayError(f"job {job_id}: not in the failed registry (already replayed or purged)")
                pipe.multi()
                act(pipe)
                pipe.execute()
                return
        except WatchError:
            continue  # another job failed or was replayed meanwhile: look again
        except RedisError as exc:
            raise ReplayError(f"job {job_id}: redis: {exc}") from exc
    raise ReplayError(f"job {job_id}: the failed registry kept changing during {WATCH_ROUNDS} attempts; try again")


def _plan_text(deps: Deps, queue: Queue, job: Job) -> str:
    own = _own_payload(job)
    if own is None:
        raise ReplayError(f"job {job.id}: not a lifecycle job ({job.func_name}); a dry run cannot plan it")
    inbox = Inbox.of([own, *coalesce.absorbed_payloads(deps, job.id)])
    try:
        contacts, decisions, outcome = plan_inbox(deps, inbox)
    except HubSpotError as exc:
        raise ReplayError(f"job {job.id}: dry run: {exc}") from exc
    changing = sorted(cid for cid, d in decisions.items() if not d.is_noop and not d.skip)
    keys = [a.key for d in decisions.values() for a in d.actions if a.type in _LEDGER_ACTIONS]
    done = set(keys) - effects.pending_keys(deps, keys)
    lines = [f"would change {len(changing)} of {len(decisions)} contacts"
             + (f", skip {outcome.skipped}" if outcome.skipped else "")]
    for cid in sorted(decisions):
        lines += _diff_lines(cid, contacts[cid], decisions[cid], done)
    return "\n".join(lines)


def _diff_lines(cid: str, contact: Contact, decision: Decision, done: set[str]) -> list[str]:
    if decision.is_noop or decision.skip:
        return [f"  {cid}: no change ({decision.reason})"]
    lines = [f"  {cid}: {prop}: {contact.get(prop) or '(empty)'} → {new}" for prop, new in decision.updates.items()]
    for action in decision.actions:
        params = ", ".join(f"{k}={_short(v)}" for k, v in action.params.items() if k != "body" and v)
        lines.append(f"  {cid}: + {action.type}" + (f" ({params})" if params else "")
                     + (" — already done, skipped" if action.key in done else ""))
    return lines


def _short(value: str, width: int = 40) -> str:
    return value if len(value) <= width else value[:width - 1] + "…"


# -- purge ----------------------------------------------------------------------------------------------
def purge_failed(deps: Deps, older_than_s: float) -> int:
    """Delete failed jobs that failed at least `older_than_s` seconds ago, with their absorbed
    jobs and `lc:absorbed:*` keys; return how many failed jobs were deleted."""
    registry = failed_registry(deps)
    purged = 0
    for item in list_failed(deps):
        if not is_older(item, older_than_s):
            continue
        try:
            _purge_one(deps, registry, item.id)
        except ReplayError:
            continue  # replayed or being replayed meanwhile: no longer ours to delete
        purged += 1
    return purged


def is_older(item: FailedJob, older_than_s: float) -> bool:
    """True when `item` failed at least `older_than_s` seconds ago (or when that is unknown)."""
    return item.failed_at is None or item.failed_at.timestamp() <= time.time() - older_than_s


def _purge_one(deps: Deps, registry: FailedJobRegistry, job_id: str) -> None:
    with _job_lock(deps, job_id):
        absorbed = [Job.key_for(jid) for jid in _absorbed_ids(deps, job_id)]
        key = coalesce.absorbed_key(job_id)

        def delete(pipe: Pipeline) -> None:
            pipe.zrem(registry.key, job_id)
            results = Result.get_key(job_id)  # type: ignore[no-untyped-call]
            pipe.delete(Job.key_for(job_id), results, key, f"{key}:done-absorbing", *absorbed)

        _while_failed(deps, registry, job_id, delete)


# -- status ---------------------------------------------------------------------------------------------
def status(deps: Deps) -> dict[str, Any]:
    """The worker's health in one dict: queues, registries, workers, limiter, last reconcile, and
    whether Redis is set up to keep what it is given (worker/redis_health.py)."""
    queue = deps.queue()
    conn = deps.redis
    workers = Worker.all(connection=conn, serializer=queue.serializer)
    used, limit = deps.limiter.headroom()
    search_used, search_limit = deps.limiter.headroom(search=True)
    return {
        "queue": queue.name,
        "queues": {q.name: q.count for q in Queue.all(connection=conn, serializer=queue.serializer)}
        | {queue.name: queue.count},
        "failed": failed_registry(deps).count,
        "scheduled": ScheduledJobRegistry(queue=queue).count,  # type: ignore[no-untyped-call]
        "started": StartedJobRegistry(queue=queue).count,
        "workers": [_worker_row(w) for w in workers],
        "limiter": {"api": {"used": used, "limit": limit, "window_s": deps.limiter.general.window_ms / 1000},
                    "search": {"used": search_used, "limit": search_limit,
                               "window_s": deps.limiter.searches.window_ms / 1000}},
        "last_reconcile": _last_reconcile(conn.get(RECONCILE_LAST_KEY)),
        "redis": redis_findings(conn, deps.settings.redis_url),
    }


def _worker_row(w: Any) -> dict[str, Any]:
    state = w.get_state()
    return {"name": w.name, "state": str(getattr(state, "value", state)), "queues": w.queue_names(),
            "current_job": w.get_current_job_id(),
            "last_heartbeat": w.last_heartbeat.isoformat() if w.last_heartbeat else None}


def _last_reconcile(raw: bytes | str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return {"raw": raw.decode(errors="replace") if isinstance(raw, bytes) else raw}
    return value if isinstance(value, dict) else {"value": value}


# -- helpers --------------------------------------------------------------------------------------------
@contextmanager
def _job_lock(deps: Deps, job_id: str) -> Iterator[None]:
    """SET NX lock on one job id, so two replays (or a replay and a purge) never touch it at once."""
    key, token = f"lc:replay:lock:{job_id}", uuid.uuid4().hex
    try:
        taken = deps.redis.set(key, token, nx=True, ex=LOCK_TTL_S)
    except RedisError as exc:
        raise ReplayError(f"job {job_id}: redis: {exc}") from exc
    if not taken:
        raise ReplayError(f"job {job_id}: another replay or purge of this job is in progress")
    try:
        yield
    finally:
        try:  # release only our own lock: it may have expired and been taken by someone else
            deps.redis.eval(_RELEASE, 1, key, token)
        except RedisError:
            pass  # it expires after LOCK_TTL_S anyway


def _fetch(deps: Deps, queue: Queue, job_id: str) -> Job:
    try:
        job = Job.fetch(job_id, connection=deps.redis, serializer=queue.serializer)
        _ = job.args  # deserialize now, so a corrupt job fails here and not mid-move
    except NoSuchJobError as exc:
        raise ReplayError(f"job {job_id}: no such job (expired, purged or mistyped)") from exc
    except DeserializationError as exc:
        raise ReplayError(f"job {job_id}: cannot read its data: {exc}") from exc
    except RedisError as exc:
        raise ReplayError(f"job {job_id}: redis: {exc}") from exc
    return job


def _own_payload(job: Job) -> dict[str, Any] | None:
    try:
        args = job.args
    except DeserializationError:
        return None
    if job.func_name != coalesce.JOB_FUNC or not args or not isinstance(args[0], dict):
        return None
    return args[0]


def _absorbed_payload(deps: Deps, queue: Queue, job_id: str) -> dict[str, Any] | None:
    try:
        return _own_payload(Job.fetch(job_id, connection=deps.redis, serializer=queue.serializer))
    except NoSuchJobError:
        return None


def _absorbed_ids(deps: Deps, job_id: str) -> list[str]:
    ids = deps.redis.lrange(coalesce.absorbed_key(job_id), 0, -1)
    return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]


def _events(inbox: Inbox) -> int:
    return sum(len(v) for bucket in (inbox.contacts, inbox.emails, inbox.companies) for v in bucket.values())


def _failed_results(job: Job) -> list[Result]:
    return [r for r in job.results() if r.type == Result.Type.FAILED]


def _error_text(job: Job, failed_results: list[Result]) -> str:
    newest = max(failed_results, key=lambda r: r.created_at, default=None)
    return (newest.exc_string if newest else None) or job._exc_info or "(no error recorded)"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    head, sep, rest = last.partition(": ")
    return f"{head.rsplit('.', 1)[-1]}{sep}{rest}" if sep and " " not in head else last  # drop the module path


def _failed_at(job: Job, score: float | None, deps: Deps) -> datetime | None:
    if job.ended_at is not None:
        return job.ended_at.replace(tzinfo=job.ended_at.tzinfo or UTC)
    if score is not None and score > 0:  # the registry scores an entry with its expiry: failed + ttl
        ttl = job.failure_ttl or deps.settings.worker.failure_ttl_s
        return datetime.fromtimestamp(score - ttl, UTC)
    return None


def _iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
