"""Store a webhook delivery as RQ jobs plus its dedupe ledger, atomically, in one round trip.

The web process's only door to Redis and RQ. `enqueue_delivery` builds one job per portal
(`worker.jobs.handle_events`, enqueued by name with the JSON serializer) and records the
commands RQ's `enqueue_job` would send, without sending them. One Lua script (`_STORE`) then
checks the delivery's events against the ledger and, only when none is there yet, runs those
commands and records the events, all in one atomic step. When some events are already in the
ledger, the script writes nothing and answers which ones; the job is rebuilt without them and
the script runs again. Either the jobs and their ledger entries are stored, or neither.

The ledger is one Redis hash per portal and hour of the event's own time (`occurredAt`, or
`created` for email events): `lc:dedupe:<portal>:<hour>`, field = the event's dedupe key,
value = the id of the job that carries it. A redelivery has the same time, so it meets its
first delivery in the same hash. Every write refreshes the hash's TTL, so an entry lives at
least `webhooks.dedupe_ttl_s` after it was written. One HMGET and one HSET per hash cost Redis
a fraction of what a key per event did.
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
from redis.exceptions import RedisError
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
    "ledger_entries",
    "ledger_key",
    "make_queue",
    "make_redis",
    "ping",
    "queue_depth",
]

JOB_FUNC = "worker.jobs.handle_events"
PAYLOAD_VERSION = 1
KEY_PREFIX = "lc:"
LEDGER_PREFIX = KEY_PREFIX + "dedupe:"
MAX_ATTEMPTS = 5  # script rounds before giving up (only under sustained contention on the same events)
BUCKETS = ("contacts", "companies", "emails")
HOUR_MS = 3_600_000
KEY_WIDTH = 32  # an event's dedupe key: 128-bit BLAKE2b, hex (webhooks.payload)

# KEYS: the delivery's ledger hashes. ARGV: ttl, the width of an event key, then per hash: its
# job id, n, and its n event keys concatenated (one argument: 100 short arguments cost the client
# more to pack than the script to split); then the number of commands, and per command: its
# length and its words.
# Answers 0 when it stored everything, else one 0/1 per event key (1 = already recorded) and
# writes nothing. The jobs are written before the ledger: a failing command leaves no entry.
_STORE = """
local ttl, width = ARGV[1], tonumber(ARGV[2])
local pos, seen, any, jobs, fields = 3, {}, false, {}, {}
for b = 1, #KEYS do
  local n, packed = tonumber(ARGV[pos + 1]), ARGV[pos + 2]
  local names = {}
  for i = 1, n do names[i] = string.sub(packed, (i - 1) * width + 1, i * width) end
  local found = redis.call('HMGET', KEYS[b], unpack(names))
  for i = 1, n do
    if found[i] then seen[#seen + 1] = 1; any = true else seen[#seen + 1] = 0 end
  end
  jobs[b], fields[b] = ARGV[pos], names
  pos = pos + 3
end
if any then return seen end
local ncmd = tonumber(ARGV[pos])
pos = pos + 1
for c = 1, ncmd do
  local len = tonumber(ARGV[pos])
  redis.call(unpack(ARGV, pos + 1, pos + len))
  pos = pos + 1 + len
end
for b = 1, #KEYS do
  local pairs, job = {}, jobs[b]
  for i, name in ipairs(fields[b]) do pairs[2 * i - 1] = name; pairs[2 * i] = job end
  redis.call('HSET', KEYS[b], unpack(pairs))
  redis.call('EXPIRE', KEYS[b], ttl)
end
return 0
"""


class RoutedEvent(NamedTuple):
    """One accepted event and where it goes in its portal's job payload."""

    portal_id: int
    bucket: str  # "contacts" | "companies" | "emails"
    group: str  # contact id, company id, or lowercased recipient
    key: str  # dedupe key: hex digest of the event's composite identity (see webhooks.payload)
    event: dict[str, Any]  # the raw event, as received
    at: int  # the event's own time in ms (occurredAt, or created): part of its key, picks its ledger hash


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
) -> list[tuple[str, dict[str, Any], list[RoutedEvent]]]:
    """(job id, payload, events) for each portal in the delivery, portals in order."""
    by_portal: dict[int, list[RoutedEvent]] = {}
    for ev in events:
        by_portal.setdefault(ev.portal_id, []).append(ev)
    plans = []
    for portal, portal_events in sorted(by_portal.items()):
        payload = build_payload(portal, portal_events, source=source, received_at=received_at)
        plans.append((job_id_for(portal, [ev.key for ev in portal_events]), payload, portal_events))
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


def ledger_key(portal_id: int, at_ms: int) -> str:
    """The ledger hash holding the keys of a portal's events whose own time falls in that hour."""
    return f"{LEDGER_PREFIX}{portal_id}:{at_ms // HOUR_MS}"


def ledger_entries(conn: Redis) -> dict[str, str]:
    """Every ledger entry, event key -> job id (for tests, benchmarks and ops; scans the ledger)."""
    entries: dict[str, str] = {}
    for key in conn.scan_iter(f"{LEDGER_PREFIX}*", count=1000):
        entries.update((k.decode(), v.decode()) for k, v in conn.hgetall(key).items())
    return entries


def _recorded_commands(queue: Queue, jobs: Sequence[Job]) -> list[Any]:
    """The commands `Queue.enqueue_job` sends for `jobs`, recorded on a pipeline that never runs."""
    recorder = queue.connection.pipeline(transaction=False)
    for job in jobs:
        queue.enqueue_job(job, pipeline=recorder)
    words: list[Any] = [len(recorder.command_stack)]
    for args, _options in recorder.command_stack:
        words.append(len(args))
        words.extend(args)
    recorder.reset()
    return words


def _store_args(
    plans: Sequence[tuple[str, dict[str, Any], list[RoutedEvent]]], ttl: int
) -> tuple[list[str], list[Any], list[RoutedEvent]]:
    """KEYS and the leading ARGV of `_STORE` (ttl, key width, then per ledger hash: job id, n,
    the keys concatenated), and the events in the order the script answers for them."""
    keys: list[str] = []
    argv: list[Any] = [ttl, KEY_WIDTH]
    order: list[RoutedEvent] = []
    for job_id, _payload, events in plans:
        by_hour: dict[tuple[int, int], list[RoutedEvent]] = {}
        for ev in events:
            by_hour.setdefault((ev.portal_id, ev.at // HOUR_MS), []).append(ev)
        for (portal, hour), hash_events in by_hour.items():
            packed = "".join([ev.key for ev in hash_events])
            if len(packed) != KEY_WIDTH * len(hash_events):
                raise ValueError(f"dedupe keys must be {KEY_WIDTH} characters")
            keys.append(f"{LEDGER_PREFIX}{portal}:{hour}")
            argv += (job_id, len(hash_events), packed)
            order += hash_events
    return keys, argv, order


def enqueue_delivery(
    queue: Queue,
    events: Sequence[RoutedEvent],
    settings: Settings,
    *,
    source: str,
    received_at: int,
) -> EnqueueResult:
    """Enqueue the events not yet in the ledger, one job per portal, atomically with their ledger
    entries, in one script call when none is a duplicate (see the module docstring). Events of
    the same delivery must have distinct keys. Raises RedisUnavailableError."""
    if not events:
        return EnqueueResult(0, 0, ())
    conn = queue.connection
    store = conn.register_script(_STORE)
    ttl = settings.webhooks.dedupe_ttl_s
    fresh = list(events)
    reconnected = False
    try:
        for _ in range(MAX_ATTEMPTS):
            plans = _plan(fresh, source=source, received_at=received_at)
            jobs = [_job(queue, job_id, payload, source, settings.worker) for job_id, payload, _ in plans]
            keys, argv, order = _store_args(plans, ttl)
            try:
                seen = store(keys=keys, args=argv + _recorded_commands(queue, jobs))
            except RedisConnectionError:
                if reconnected:  # a pooled connection may predate a Redis restart: one more try
                    raise
                reconnected = True
                continue
            if seen == 0:
                return EnqueueResult(len(fresh), len(events) - len(fresh), tuple(p[0] for p in plans))
            fresh = [ev for ev, found in zip(order, seen, strict=True) if not found]
            if not fresh:
                return EnqueueResult(0, len(events), ())
            # some were recorded meanwhile (a redelivery, or a concurrent one): store the rest
    except RedisError as exc:
        raise RedisUnavailableError(f"redis: {type(exc).__name__}: {exc}") from exc
    raise RedisUnavailableError(f"redis: ledger entries kept changing during {MAX_ATTEMPTS} attempts")
