"""Store a delivery's jobs and dedupe ledger entries atomically, in one script call per delivery.

This is the web path's door to Redis; `worker.enqueue` keeps the shared pieces (the ledger
layout, job ids, the Redis client) and its `enqueue_delivery`, which builds every job with RQ.
Here RQ builds one job per process instead: `JobTemplate` records the commands RQ's own
`Queue.enqueue_job` sends for a job whose id, data, description and timestamps are placeholders.
A delivery's job is those commands with its own values put in, so it is the job RQ would have
written (tests compare the two), at a tenth of the CPU: building a `Job` and recording its
commands cost about 0.2 ms a delivery, most of the Redis work's client side.

`_STORE` then, in one atomic step, looks the delivery's event keys up in the ledger and, only
when none is there yet, runs the job commands and records the events. When some events are
already recorded it writes nothing and answers which ones; the job is rebuilt without them and
the script runs again. Either the jobs and their ledger entries are stored, or neither; the jobs
are written before the ledger, so a command that fails half-way leaves no ledger entry.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha1
from typing import TYPE_CHECKING, Any

import hiredis
import orjson
import rq
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, Retry
from rq.serializers import JSONSerializer
from rq.utils import now, utcformat

from worker.enqueue import HOUR_MS, JOB_FUNC, LEDGER_PREFIX, EnqueueResult, RoutedEvent, job_id_for
from worker.errors import RedisUnavailableError

if TYPE_CHECKING:
    from worker.settings import Settings

__all__ = ["DeliveryStore", "JobTemplate", "Plan", "plan_events"]

MAX_ATTEMPTS = 5  # script rounds before giving up (only under sustained contention on the same events)
BUCKETS = ("contacts", "companies", "emails")
PAYLOAD_VERSION = 1
ZLIB_LEVEL = 1  # RQ compresses job data at 6; 1 is 4x faster on a delivery, a few % larger, same format

# KEYS: the delivery's ledger hashes. ARGV: ttl; per hash: its job id, n, its n event keys; then
# the job commands, each as its length and its words.
# Answers 0 when it stored everything, else one 0/1 per event key (1 = already recorded), and
# then it has written nothing. The jobs are written before the ledger.
_STORE = """
local ttl, pos, spans, any = ARGV[1], 2, {}, false
for b = 1, #KEYS do
  local n = tonumber(ARGV[pos + 1])
  local found = redis.call('HMGET', KEYS[b], unpack(ARGV, pos + 2, pos + 1 + n))
  for i = 1, n do if found[i] then any = true end end
  spans[b] = {pos, n, found}
  pos = pos + 2 + n
end
if any then
  local seen = {}
  for b = 1, #KEYS do
    local found = spans[b][3]
    for i = 1, spans[b][2] do seen[#seen + 1] = found[i] and 1 or 0 end
  end
  return seen
end
while pos <= #ARGV do
  local len = tonumber(ARGV[pos])
  redis.call(unpack(ARGV, pos + 1, pos + len))
  pos = pos + 1 + len
end
for b = 1, #KEYS do
  local at, n = spans[b][1], spans[b][2]
  local job, pairs = ARGV[at], {}
  for i = 1, n do pairs[2 * i - 1] = ARGV[at + 1 + i]; pairs[2 * i] = job end
  redis.call('HSET', KEYS[b], unpack(pairs))
  redis.call('EXPIRE', KEYS[b], ttl)
end
return 0
"""
_STORE_SHA = sha1(_STORE.encode()).hexdigest()

_ID = "hs-0-ffffffffffffffff"  # placeholders, recorded once and replaced per delivery
_DESCRIPTION = "\x00description\x00"
_VARIABLE_FIELDS = {b"data": "data", b"description": "description", b"created_at": "at", b"enqueued_at": "at"}


class JobTemplate:
    """The commands RQ's `Queue.enqueue_job` sends for one lifecycle job, recorded once, as words
    that are constant bytes or the name of the value that goes there: "id" (also inside a key),
    "data", "description" or "at" (RQ's created_at and enqueued_at)."""

    def __init__(self, queue: Queue, worker: Any) -> None:
        intervals = list(worker.retry_intervals_s)
        job = queue.create_job(
            JOB_FUNC, args=({},), job_id=_ID, timeout=worker.job_timeout_s,
            result_ttl=worker.result_ttl_s, failure_ttl=worker.failure_ttl_s,
            # the same retries as worker.jobs.enqueue_payload: transient HubSpot failures raise
            retry=Retry(max=len(intervals), interval=intervals) if intervals else None,
            description=_DESCRIPTION,
        )
        recorder = queue.connection.pipeline(transaction=False)
        queue.enqueue_job(job, pipeline=recorder)
        encode = queue.connection.get_encoder().encode
        stack = recorder.command_stack
        self.commands = [self._words([encode(w) for w in args]) for args, _ in stack]  # type: ignore[no-untyped-call]
        recorder.reset()
        found = {w if type(w) is str else "id" for c in self.commands for w in c if type(w) is not bytes}
        if queue.serializer is not JSONSerializer or found != {"id", "data", "description", "at"}:
            raise RuntimeError(f"RQ {rq.__version__}: its enqueue commands are not the ones this template fills in")

    @staticmethod
    def _words(args: list[bytes]) -> list[Any]:
        words: list[Any] = []
        variable = None
        for i, arg in enumerate(args):
            if variable is not None:
                words.append(variable)
            elif _ID.encode() in arg:
                words.append(tuple(arg.split(_ID.encode())))  # the id goes between the parts
            else:
                words.append(arg)
            variable = _VARIABLE_FIELDS.get(arg) if args[0] == b"HSET" and i >= 2 and i % 2 == 0 else None
        return words

    def fill(self, job_id: str, data: bytes, description: str, at: str, out: list[Any]) -> None:
        """Append to `out` the commands for this job, each as its length and its words."""
        values = {"data": data, "description": description, "at": at}
        jid = job_id.encode()
        for command in self.commands:
            out.append(len(command))
            for word in command:
                if type(word) is bytes:
                    out.append(word)
                elif type(word) is tuple:
                    out.append(jid.join(word))
                else:
                    out.append(values[word])


def job_data(payload: dict[str, Any]) -> bytes:
    """What RQ stores as a job's data: JSONSerializer.dumps((func, instance, args, kwargs)), zlib'd."""
    try:
        raw = orjson.dumps((JOB_FUNC, None, (payload,), {}))
    except TypeError:  # orjson.JSONEncodeError: integers past 64 bits; the stdlib copes
        raw = JSONSerializer.dumps((JOB_FUNC, None, (payload,), {}))  # type: ignore[no-untyped-call]
    return zlib.compress(raw, ZLIB_LEVEL)


@dataclass
class Plan:
    """One portal's job in the making: its raw events grouped as the payload groups them, and its
    events by ledger hash (the hour of their own time), both in delivery order."""

    portal: int
    buckets: dict[str, dict[str, list[Any]]]  # "contacts" | "companies" | "emails" -> group -> events
    hours: dict[int, list[RoutedEvent]]

    @classmethod
    def new(cls, portal: int) -> Plan:
        return cls(portal, {"contacts": {}, "companies": {}, "emails": {}}, {})

    def payload(self, source: str, received_at: int) -> dict[str, Any]:
        """The job's one argument (docs/webhooks.md, "The job")."""
        return {"v": PAYLOAD_VERSION, "portal_id": self.portal, "received_at": received_at, "source": source,
                **self.buckets}


def plan_events(events: Sequence[RoutedEvent]) -> dict[int, Plan]:
    """The plans of `events`, by portal (webhooks.fastpath builds the same while routing)."""
    plans: dict[int, Plan] = {}
    for ev in events:
        plan = plans.get(ev.portal_id)
        if plan is None:
            plan = plans[ev.portal_id] = Plan.new(ev.portal_id)
        groups = plan.buckets[ev.bucket]
        if ev.group in groups:
            groups[ev.group].append(ev.event)
        else:
            groups[ev.group] = [ev.event]
        hour = ev.at // HOUR_MS
        if hour in plan.hours:
            plan.hours[hour].append(ev)
        else:
            plan.hours[hour] = [ev]
    return plans


def _description(source: str, payload: dict[str, Any]) -> str:
    counts = ", ".join(f"{len(payload[b])} {b}" for b in BUCKETS if payload[b])
    return f"{source} delivery for portal {payload['portal_id']}: {counts}"


class DeliveryStore:
    """`store(events, source=, received_at=)` for one app: its queue, settings and job template."""

    def __init__(self, queue: Queue, settings: Settings) -> None:
        self.queue, self.worker = queue, settings.worker
        self.pool = queue.connection.connection_pool
        self.ttl = settings.webhooks.dedupe_ttl_s
        self._template: JobTemplate | None = None
        self._local = threading.local()

    @property
    def template(self) -> JobTemplate:
        """Recorded at the first delivery, not at startup: RQ asks Redis for its version on the way.
        (Two threads may both record it once; they get the same commands.)"""
        if self._template is None:
            self._template = JobTemplate(self.queue, self.worker)
        return self._template

    def _execute(self, *args: Any) -> Any:
        """One command on this thread's own connection (made from the client's pool settings:
        address, TLS, password, database, timeouts). The client's `execute_command` spends about
        40 µs of CPU a command on pooling, retries and instrumentation; this, about 5."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self.pool.make_connection()
        try:
            connection.send_packed_command([hiredis.pack_command(args)], check_health=False)
            return connection.read_response()
        except (RedisConnectionError, RedisTimeoutError, OSError):
            connection.disconnect()  # a reply may still be on its way: the next call connects afresh
            raise

    def _call(self, plans: dict[int, Plan], source: str, received_at: int) -> tuple[Any, list[RoutedEvent], list[str]]:
        """Run `_STORE` once for `plans`: (its answer, the events in its answer's order, job ids)."""
        keys: list[str] = []
        argv: list[Any] = [self.ttl]
        order: list[RoutedEvent] = []
        job_ids: list[str] = []
        commands: list[Any] = []
        template = self.template
        at = utcformat(now())
        for portal in sorted(plans):
            plan = plans[portal]
            hours = plan.hours
            all_keys = [ev.key for evs in hours.values() for ev in evs]
            job_id = job_id_for(plan.portal, all_keys)
            job_ids.append(job_id)
            for hour, hour_events in hours.items():
                keys.append(f"{LEDGER_PREFIX}{plan.portal}:{hour}")
                argv.append(job_id)
                argv.append(len(hour_events))
                argv.extend([ev.key for ev in hour_events])
                order.extend(hour_events)
            payload = plan.payload(source, received_at)
            template.fill(job_id, job_data(payload), _description(source, payload), at, commands)
        try:
            answer = self._execute("EVALSHA", _STORE_SHA, len(keys), *keys, *argv, *commands)
        except NoScriptError:
            answer = self._execute("EVAL", _STORE, len(keys), *keys, *argv, *commands)
        return answer, order, job_ids

    def store(self, events: Sequence[RoutedEvent], *, source: str, received_at: int,
              plans: dict[int, Plan] | None = None) -> EnqueueResult:
        """Enqueue the events not yet in the ledger, one job per portal, atomically with their ledger
        entries (see the module docstring). `plans`, when given, are `plan_events(events)`, made on
        the way. Events of one delivery must have distinct keys. Raises RedisUnavailableError."""
        if not events:
            return EnqueueResult(0, 0, ())
        fresh = list(events)
        reconnected = False
        try:
            for _ in range(MAX_ATTEMPTS):
                try:
                    if plans is None:
                        plans = plan_events(fresh)
                    seen, order, job_ids = self._call(plans, source, received_at)
                except RedisConnectionError:
                    if reconnected:  # a pooled connection may predate a Redis restart: one more try
                        raise
                    reconnected = True
                    continue
                if seen == 0:
                    return EnqueueResult(len(fresh), len(events) - len(fresh), tuple(job_ids))
                fresh = [ev for ev, found in zip(order, seen, strict=True) if not found]
                plans = None
                if not fresh:
                    return EnqueueResult(0, len(events), ())
                # some were recorded meanwhile (a redelivery, or a concurrent one): store the rest
        except RedisError as exc:
            raise RedisUnavailableError(f"redis: {type(exc).__name__}: {exc}") from exc
        raise RedisUnavailableError(f"redis: ledger entries kept changing during {MAX_ATTEMPTS} attempts")
