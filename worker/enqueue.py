"""Store a webhook delivery as RQ jobs plus its dedupe ledger, in one Redis transaction.

The web process's only door to Redis and RQ. `enqueue_delivery` WATCHes the delivery's
ledger keys, drops events already recorded, and in one MULTI/EXEC writes one job per portal
(`worker.jobs.handle_events`, enqueued by name with the JSON serializer) together with the
ledger entries of the events it carries; a concurrent identical delivery makes EXEC fail and
is re-checked. Either both the jobs and the ledger entries are stored, or neither.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, WatchError
from redis.retry import Retry as RedisRetry
from rq import Queue, Retry
from rq.job import Job
from rq.serializers import JSONSerializer

from worker.errors import RedisUnavailableError

try:  # ~10x faster than json.dumps for the job data; optional
    import orjson

    _fast_dumps: Callable[[Any], bytes] | None = orjson.dumps
except ImportError:  # pragma: no cover
    _fast_dumps = None

if TYPE_CHECKING:
    from redis.client import Pipeline

    from worker.settings import Settings

__all__ = [
    "JOB_FUNC",
    "KEY_PREFIX",
    "LEDGER_PREFIX",
    "EnqueueResult",
    "RedisUnavailableError",
    "RoutedEvent",
    "build_payload",
    "enqueue_delivery",
    "job_id_for",
    "make_queue",
    "make_redis",
    "ping",
    "queue_depth",
]

JOB_FUNC = "worker.jobs.handle_events"
PAYLOAD_VERSION = 1
KEY_PREFIX = "lc:"
LEDGER_PREFIX = KEY_PREFIX + "dedupe:"
MAX_ATTEMPTS = 5  # WATCH rounds before giving up (only under sustained contention on the same keys)
BUCKETS = ("contacts", "companies", "emails")

# SET every ledger key of one job to that job's id with the ledger TTL, in one command.
_LEDGER_SCRIPT = "for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[1], 'EX', ARGV[2]) end return #KEYS"


class RoutedEvent(NamedTuple):
    """One accepted event and where it goes in its portal's job payload."""

    portal_id: int
    bucket: str  # "contacts" | "companies" | "emails"
    group: str  # contact id, company id, or lowercased recipient
    key: str  # dedupe key: hex digest of the event's composite identity (see webhooks.payload)
    event: dict[str, Any]  # the raw event, as received


@dataclass(frozen=True)
class EnqueueResult:
    accepted: int  # events stored in new jobs
    duplicates: int  # events already in the ledger
    job_ids: tuple[str, ...]


def make_redis(url: str, *, timeout_s: float = 1.0) -> Redis:
    """A Redis client that fails fast: HubSpot gives up on a delivery after 5 s, and a request may
    wait on Redis a few times (WATCH round, EXEC, one retry), so each wait is short."""
    return Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=min(timeout_s, 1.0),
        retry=RedisRetry(NoBackoff(), 1),
        health_check_interval=30,
    )


class _IngestJob(Job):
    """An RQ Job that compresses its data with zlib level 1 instead of 6: 4x faster on a
    100-event payload, a few % larger, and the same format (the worker reads it as usual)."""

    def to_dict(self, include_meta: bool = True, include_result: bool = True) -> dict[str, Any]:
        data = self.data
        self._data = b""  # let Job.to_dict compress nothing; we compress below
        try:
            obj = super().to_dict(include_meta=include_meta, include_result=include_result)
        finally:
            self._data = data
        obj["data"] = zlib.compress(data, 1)
        return obj


def make_queue(conn: Redis, name: str) -> Queue:
    """The RQ queue jobs go to, with the JSON serializer the worker uses too."""
    return Queue(name, connection=conn, serializer=JSONSerializer, job_class=_IngestJob)


def ping(conn: Redis) -> bool:
    """True when Redis answers PING."""
    try:
        return bool(conn.ping())
    except RedisError:
        return False


def queue_depth(queue: Queue) -> int:
    """Jobs waiting in `queue`. Raises RedisUnavailableError."""
    try:
        return int(queue.count)
    except RedisError as exc:
        raise RedisUnavailableError(f"redis: {exc}") from exc


def job_id_for(portal_id: int, keys: Sequence[str]) -> str:
    """hs-<portal>-<first 16 hex of sha256 of the sorted dedupe keys>: stable for the same events."""
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]
    return f"hs-{portal_id}-{digest}"


def build_payload(
    portal_id: int, events: Sequence[RoutedEvent], *, source: str, received_at: int
) -> dict[str, Any]:
    """The job's one argument: the portal's events grouped by contact, company and recipient."""
    payload: dict[str, Any] = {
        "v": PAYLOAD_VERSION, "portal_id": portal_id, "received_at": received_at, "source": source,
        "contacts": {}, "companies": {}, "emails": {},
    }
    for ev in events:
        bucket = payload[ev.bucket]
        if ev.group in bucket:
            bucket[ev.group].append(ev.event)
        else:
            bucket[ev.group] = [ev.event]
    return payload


def _plan(
    events: Sequence[RoutedEvent], *, source: str, received_at: int
) -> list[tuple[str, dict[str, Any], list[str]]]:
    """(job id, payload, dedupe keys) for each portal in the delivery, portals in order."""
    by_portal: dict[int, list[RoutedEvent]] = {}
    for ev in events:
        by_portal.setdefault(ev.portal_id, []).append(ev)
    plans = []
    for portal, portal_events in sorted(by_portal.items()):
        keys = [ev.key for ev in portal_events]
        payload = build_payload(portal, portal_events, source=source, received_at=received_at)
        plans.append((job_id_for(portal, keys), payload, keys))
    return plans


def _count(payload: dict[str, Any]) -> str:
    return ", ".join(f"{len(payload[b])} {b}" for b in BUCKETS if payload[b])


def _job(queue: Queue, job_id: str, payload: dict[str, Any], source: str, worker: Any) -> Job:
    intervals = list(worker.retry_intervals_s)
    job = queue.create_job(
        JOB_FUNC, args=(payload,), job_id=job_id, timeout=worker.job_timeout_s,
        result_ttl=worker.result_ttl_s, failure_ttl=worker.failure_ttl_s,
        # the same retries as worker.jobs.enqueue_payload: transient HubSpot failures raise
        retry=Retry(max=len(intervals), interval=intervals) if intervals else None,
        description=f"{source} delivery for portal {payload['portal_id']}: {_count(payload)}",
    )
    if _fast_dumps is not None:
        # What JSONSerializer.dumps would store for (func, instance, args, kwargs), ~10x faster;
        # the worker reads it with JSONSerializer.loads like any other job.
        try:
            job.data = _fast_dumps((JOB_FUNC, None, (payload,), {}))
        except TypeError:  # orjson.JSONEncodeError: integers past 64 bits; RQ's serializer copes
            pass
    return job


def _watch_and_read(pipe: Pipeline, keys: list[str]) -> list[Any]:
    """WATCH the keys and MGET them in one round trip, on the connection `pipe` will EXEC on."""
    connection = pipe.connection_pool.get_connection()
    pipe.connection = connection  # from here on, pipe.reset() releases it (and UNWATCHes)
    pipe.watching = True
    packed = connection.pack_commands([("WATCH", *keys), ("MGET", *keys)])  # type: ignore[no-untyped-call]
    connection.send_packed_command(packed)  # type: ignore[no-untyped-call]
    connection.read_response()
    return connection.read_response()  # type: ignore[no-any-return]


def enqueue_delivery(
    queue: Queue,
    events: Sequence[RoutedEvent],
    settings: Settings,
    *,
    source: str,
    received_at: int,
) -> EnqueueResult:
    """Enqueue the events not yet in the ledger, one job per portal, atomically with their ledger
    entries: WATCH + MGET of the ledger keys, then MULTI, the jobs, the ledger SETs, EXEC.
    Events of the same delivery must have distinct keys. Raises RedisUnavailableError."""
    if not events:
        return EnqueueResult(0, 0, ())
    conn = queue.connection
    keys = [LEDGER_PREFIX + ev.key for ev in events]
    ttl = settings.webhooks.dedupe_ttl_s
    reconnected = False
    try:
        for _ in range(MAX_ATTEMPTS):
            with conn.pipeline(transaction=True) as pipe:
                try:
                    seen = _watch_and_read(pipe, keys)
                except RedisConnectionError:
                    if reconnected:  # a pooled connection may predate a Redis restart: one more try
                        raise
                    reconnected = True
                    continue
                fresh = [ev for ev, found in zip(events, seen, strict=True) if found is None]
                if not fresh:
                    return EnqueueResult(0, len(events), ())
                plans = _plan(fresh, source=source, received_at=received_at)
                jobs = [_job(queue, job_id, payload, source, settings.worker) for job_id, payload, _ in plans]
                try:
                    pipe.multi()
                    for job in jobs:
                        queue.enqueue_job(job, pipeline=pipe)
                    for job_id, _, job_keys in plans:
                        pipe.eval(_LEDGER_SCRIPT, len(job_keys), *(LEDGER_PREFIX + k for k in job_keys),
                                  job_id, ttl)
                    pipe.execute()
                except WatchError:
                    continue  # the ledger changed under us (a concurrent delivery): look again
            return EnqueueResult(len(fresh), len(events) - len(fresh), tuple(p[0] for p in plans))
    except RedisError as exc:
        raise RedisUnavailableError(f"redis: {type(exc).__name__}: {exc}") from exc
    raise RedisUnavailableError(f"redis: ledger keys kept changing during {MAX_ATTEMPTS} attempts")
