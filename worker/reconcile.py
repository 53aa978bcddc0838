"""Reconcile and backfill: run the rules over every contact HubSpot changed since the watermark.

Contacts come from a CRM search on `lastmodifieddate`, paged by keyset (lastmodifieddate, id)
inside time windows that are halved while a search reports more than the 10 000-result cap;
email events come from the legacy Email Events API. Each page goes through `process_inbox`
(`plan_inbox` for a dry run). Watermark, cursor, run lock and last summary live in Redis.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import redis
import structlog

from rules.triggers import parse_ms
from worker.deps import Deps
from worker.errors import HubSpotError, HubSpotTransientError, ReconcileError, ReconcileLockedError
from worker.process import Inbox, Requeue, plan_inbox, process_inbox

log = structlog.get_logger(__name__)

WATERMARK_KEY = "lc:reconcile:watermark"  # ms: every change before it (minus the look-back) was reconciled
CURSOR_KEY = "lc:reconcile:cursor"  # JSON RunState of the run in progress (or interrupted)
CURSOR_EMAILS_KEY = "lc:reconcile:cursor:emails"  # recipients whose email events that run has handled
LOCK_KEY = "lc:reconcile:lock"
LAST_KEY = "lc:reconcile:last"  # JSON summary of the last run (read by `lifecycle status`)
SEARCH_CAP = 10_000  # HubSpot's search answers at most this many results per query
MAX_BATCH = 100  # a page is one batch read
MAX_SEEN = 100  # ids excluded by one NOT_IN filter (>= MAX_BATCH)
DEFAULT_LOOKBACK_S = 600  # search indexing lag and clock skew
LOCK_TTL_S = 60
EMAIL_PAGE = 1000
MODIFIED, OBJECT_ID = "lastmodifieddate", "hs_object_id"


# -- windows and keyset paging (pure) -------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """Contacts whose lastmodifieddate is in [lo, hi] (ms, inclusive)."""

    lo: int
    hi: int

    def halves(self) -> tuple[Window, Window]:
        mid = (self.lo + self.hi) // 2
        return Window(self.lo, mid), Window(mid + 1, self.hi)


@dataclass(frozen=True)
class Position:
    """Where paging stands in a window: every contact before it in (lastmodifieddate, id) order is done.

    `ts` None: nothing done yet. `seen`: ids at `ts` already done. `after_id` set: a whole page
    shared one instant, so the contacts at `ts` are paged by id. `ts_done`: all of `ts` is done.
    """

    ts: int | None = None
    seen: tuple[str, ...] = ()
    after_id: int | None = None
    ts_done: bool = False


def _filter(name: str, operator: str, value: object = None, values: Sequence[str] = ()) -> dict[str, Any]:
    found: dict[str, Any] = {"propertyName": name, "operator": operator}
    if values:
        found["values"] = list(values)
    else:
        found["value"] = str(value)
    return found


def page_request(window: Window, pos: Position, limit: int, properties: Sequence[str] = ("email",)) -> dict[str, Any]:
    """The search body for the page after `pos` in `window`.

    Keyset, never `after`: this run's own writes move contacts out of the window, which would
    shift an offset and skip contacts; no query ever pages, so none meets the 10 000 cap either.
    """
    by = MODIFIED
    if pos.ts is None:
        groups = [[_filter(MODIFIED, "GTE", window.lo), _filter(MODIFIED, "LTE", window.hi)]]
    elif pos.after_id is not None:
        tie = [_filter(MODIFIED, "EQ", pos.ts), _filter(OBJECT_ID, "GT", pos.after_id)]
        if pos.seen:
            tie.append(_filter(OBJECT_ID, "NOT_IN", values=pos.seen))
        groups, by = [tie], OBJECT_ID
    else:
        later = [_filter(MODIFIED, "GT", pos.ts), _filter(MODIFIED, "LTE", window.hi)]
        rest = [_filter(MODIFIED, "EQ", pos.ts), _filter(OBJECT_ID, "NOT_IN", values=pos.seen)]
        groups = [later] if pos.ts_done or not pos.seen else [rest, later]
    return {"filterGroups": [{"filters": g} for g in groups], "sorts": [{"propertyName": by, "direction": "ASCENDING"}],
            "properties": list(dict.fromkeys([MODIFIED, *properties])), "limit": limit}


def modified_ms(contact: Mapping[str, Any]) -> int:
    value = parse_ms((contact.get("properties") or {}).get(MODIFIED))
    if value is None:
        raise ReconcileError(f"contact {contact.get('id')}: search answer has no {MODIFIED}")
    return value


def advance(pos: Position, results: Sequence[Mapping[str, Any]], limit: int,
            total: int | None = None) -> tuple[list[Mapping[str, Any]], Position | None]:
    """The contacts of one page to handle now, and the position after them (None: window done)."""
    everything = len(results) < limit or (total is not None and total <= len(results))
    if pos.after_id is not None:  # ids ascending at one instant
        if everything:
            return list(results), Position(ts=pos.ts, ts_done=True)
        return list(results), replace(pos, after_id=max(int(r["id"]) for r in results))
    if everything:
        return list(results), None
    stamps = [modified_ms(r) for r in results]
    last = stamps[-1]
    if stamps[0] == last:  # a whole page at one instant, in no particular order
        before = pos.seen if pos.ts == last else ()
        seen = before + tuple(str(r["id"]) for r in results)
        if len(seen) > MAX_SEEN:  # too many to exclude with NOT_IN: page through the instant by id
            return [], Position(ts=last, seen=before, after_id=0)
        return list(results), Position(ts=last, seen=seen)
    tail = tuple(str(r["id"]) for r, s in zip(results, stamps, strict=True) if s == last)
    return list(results), Position(ts=last, seen=tail)


@dataclass
class Pager:
    """Every contact of `windows`, page by page; `windows`/`pos` always say where to resume."""

    search: Callable[[Mapping[str, Any]], Mapping[str, Any]]
    windows: list[Window]
    pos: Position = field(default_factory=Position)
    batch: int = MAX_BATCH
    cap: int = SEARCH_CAP
    total: int | None = None  # of the first search: the progress bar's denominator
    splits: int = 0

    def pages(self) -> Iterator[list[Mapping[str, Any]]]:
        while self.windows:
            window = self.windows[0]
            answer = self.search(page_request(window, self.pos, self.batch))
            results, total = list(answer.get("results") or []), int(answer.get("total") or 0)
            self.total = total if self.total is None else self.total
            if self.pos.ts is None and total > self.cap and results:
                lo = max(window.lo, modified_ms(results[0]))  # nothing in the window is older
                if lo < window.hi:
                    self.windows[0:1] = list(Window(lo, window.hi).halves())
                    self.splits += 1
                    continue
            todo, pos = advance(self.pos, results, self.batch, total)
            if pos is None:
                self.windows.pop(0)
                pos = Position()
            self.pos = pos
            if todo:
                yield todo


# -- email events ---------------------------------------------------------------------------------
def fetch_email_events(deps: Deps, since: int, until: int) -> tuple[dict[str, list[dict[str, Any]]], int]:
    """Email events the rules read, newest per (recipient, type, campaign, category), by recipient.

    Only the health types (bounce, unsubscribe, spam) and, when lead-generation campaigns are
    listed, their DELIVERED events: with "all", `hs_email_delivered` already tells T2.
    """
    policy = deps.settings.policy
    queries: list[dict[str, str]] = [{"event_type": t} for t in sorted(policy.health_event_types)]
    if policy.lead_gen_campaign_ids is not None:
        queries += [{"event_type": "DELIVERED", "campaign_id": c} for c in sorted(policy.lead_gen_campaign_ids)]
    newest: dict[tuple[str, ...], dict[str, Any]] = {}
    fetched = 0
    for query in queries:
        offset: str | None = None
        while True:
            page = deps.hubspot.email_events(start_ms=since, end_ms=until, offset=offset, limit=EMAIL_PAGE, **query)
            for event in page.get("events") or []:
                fetched += 1
                recipient = str(event.get("recipient") or "").strip().lower()
                key = (recipient, str(event.get("type")), str(event.get("emailCampaignId")), str(event.get("category")))
                if recipient and (key not in newest or _created(event) > _created(newest[key])):
                    newest[key] = event
            offset = str(page.get("offset") or "") or None
            if not page.get("hasMore") or offset is None:
                break
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (recipient, *_), event in newest.items():
        grouped[recipient].append(event)
    return {r: sorted(events, key=_created) for r, events in grouped.items()}, fetched


def _created(event: Mapping[str, Any]) -> int:
    return parse_ms(event.get("created")) or 0


# -- run state --------------------------------------------------------------------------------------
@dataclass
class Counts:
    contacts: int = 0  # looked at
    written: int = 0  # written back (a dry run: would be)
    failed: int = 0  # in pages that failed (handed to the queue, replayable)
    deferred: int = 0  # locked by a job: handed to the queue
    skipped: int = 0
    email_events: int = 0
    pages: int = 0
    rows: dict[str, int] = field(default_factory=dict)

    def add_rows(self, rows: Mapping[str, int]) -> None:
        for row, n in rows.items():
            self.rows[row] = self.rows.get(row, 0) + int(n)


@dataclass
class RunState:
    """One run, as kept in `lc:reconcile:cursor` after every page."""

    mode: str  # "all", "watermark" or "since:<seconds>": a rerun with the same mode resumes
    since: int
    until: int
    started_at: int
    windows: list[Window]
    pos: Position = field(default_factory=Position)
    phase: str = "contacts"  # then "emails": events whose recipient no page held
    total: int | None = None
    splits: int = 0
    counts: Counts = field(default_factory=Counts)

    def to_json(self) -> str:
        data = asdict(self)
        data["windows"] = [[w.lo, w.hi] for w in self.windows]
        return json.dumps({"v": 1, **data}, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> RunState:
        try:
            data = json.loads(raw)
            pos = data["pos"]
            return cls(mode=data["mode"], since=int(data["since"]), until=int(data["until"]),
                       started_at=int(data["started_at"]), windows=[Window(int(a), int(b)) for a, b in data["windows"]],
                       pos=Position(pos["ts"], tuple(pos["seen"]), pos["after_id"], bool(pos["ts_done"])),
                       phase=data["phase"], total=data["total"], splits=int(data["splits"]),
                       counts=Counts(**data["counts"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ReconcileError(f"{CURSOR_KEY}: unreadable cursor ({exc}); delete it to start over") from exc


@dataclass(frozen=True)
class Options:
    mode: str = "watermark"  # "all", "since" or "watermark"
    since_s: float | None = None
    dry_run: bool = False
    batch: int = MAX_BATCH
    lookback_s: float = DEFAULT_LOOKBACK_S
    cap: int = SEARCH_CAP

    @property
    def key(self) -> str:
        return f"since:{int(self.since_s or 0)}" if self.mode == "since" else self.mode


@dataclass
class Report:
    state: RunState
    resumed: bool
    completed: bool
    duration_s: float
    stopped: str | None = None  # why the run stopped before the end (the cursor is kept)

    @property
    def ok(self) -> bool:
        return self.completed and not self.state.counts.failed


class Reporter(Protocol):
    def started(self, state: RunState, resumed: bool) -> None: ...

    def advanced(self, state: RunState) -> None: ...


class _Quiet:
    def started(self, state: RunState, resumed: bool) -> None:
        pass

    def advanced(self, state: RunState) -> None:
        pass


def _text(value: bytes | str | None) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


# -- the lock ---------------------------------------------------------------------------------------
_EXTEND = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class RunLock:
    """`lc:reconcile:lock`: SET NX with a TTL, refreshed by a heartbeat; `lost` if it ever slips away."""

    def __init__(self, conn: redis.Redis, *, ttl_s: float = LOCK_TTL_S) -> None:
        self._conn, self._ttl_ms = conn, int(ttl_s * 1000)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        if not self._conn.set(LOCK_KEY, self.token, nx=True, px=self._ttl_ms):
            holder = _text(self._conn.get(LOCK_KEY)) or "?"
            ttl = max(0, int(self._conn.pttl(LOCK_KEY))) // 1000
            raise ReconcileLockedError(f"another reconcile is running ({holder}; its lock {LOCK_KEY} "
                                       f"expires in {ttl} s unless renewed)")
        self._thread = threading.Thread(target=self._beat, name="reconcile-lock", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self._ttl_ms / 3000.0):
            try:
                if not self._conn.eval(_EXTEND, 1, LOCK_KEY, self.token, self._ttl_ms):
                    self.lost.set()
                    return
            except redis.RedisError:
                continue  # retried on the next beat; the TTL leaves two more chances

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._conn.eval(_RELEASE, 1, LOCK_KEY, self.token)


# -- the run ----------------------------------------------------------------------------------------
def reconcile(deps: Deps, options: Options, *, requeue: Requeue, reporter: Reporter | None = None,
              should_stop: Callable[[], bool] = lambda: False) -> Report:
    """Run the rules over the contacts changed in the run's range, resuming an interrupted run.

    Raises ReconcileLockedError when another run holds the lock. A HubSpot outage (a transient
    error the gateway's retries could not get past), a refused search or `should_stop` ends the
    run early with the cursor kept; a page whose processing HubSpot refuses is handed to the
    queue (RQ retries it, `lifecycle replay` finds it if it keeps failing) and counted as failed.
    """
    lock = RunLock(deps.redis)
    lock.acquire()
    try:
        return _Run(deps, options, requeue, reporter or _Quiet(), should_stop, lock).run()
    finally:
        lock.release()


class _Run:
    def __init__(self, deps: Deps, options: Options, requeue: Requeue, reporter: Reporter,
                 should_stop: Callable[[], bool], lock: RunLock) -> None:
        self.deps, self.options, self.requeue, self.reporter = deps, options, requeue, reporter
        self.should_stop, self.lock = should_stop, lock
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.handled: set[str] = set()

    def run(self) -> Report:
        started = time.monotonic()
        state, resumed = self._state()
        self.reporter.started(state, resumed)
        stopped = None
        try:
            self.events, state.counts.email_events = fetch_email_events(self.deps, state.since, state.until)
            stopped = self._contacts(state) if state.phase == "contacts" else None
            if stopped is None:
                state.phase = "emails"
                stopped = self._leftover_emails(state)
        except HubSpotTransientError as exc:
            stopped = f"HubSpot is unavailable: {exc}"
        except HubSpotError as exc:  # a search or email-events read HubSpot refused: not worth going on
            stopped = f"HubSpot refused a read: {exc}"
        report = Report(state, resumed, stopped is None, round(time.monotonic() - started, 2), stopped)
        self._finish(report)
        return report

    def _state(self) -> tuple[RunState, bool]:
        conn, options = self.deps.redis, self.options
        raw = None if options.dry_run else conn.get(CURSOR_KEY)
        if raw is not None:
            state = RunState.from_json(raw)
            if state.mode == options.key:
                self.handled = {_text(m) for m in conn.smembers(CURSOR_EMAILS_KEY)}
                log.info("reconcile_resumed", mode=state.mode, windows=len(state.windows), phase=state.phase)
                return state, True
            log.warning("reconcile_cursor_discarded", mode=state.mode, why=f"this run is {options.key}")
            conn.delete(CURSOR_KEY, CURSOR_EMAILS_KEY)
        now = self.deps.clock_ms()
        since = self._since(now)
        state = RunState(options.key, since, now, now, [Window(since, now)])
        self._save(state, {})
        return state, False

    def _since(self, now: int) -> int:
        if self.options.mode == "all":
            return 0
        if self.options.mode == "since":
            return max(0, now - int((self.options.since_s or 0) * 1000))
        watermark = self.deps.redis.get(WATERMARK_KEY)
        if watermark is None:
            return 0  # the first run is the backfill
        return max(0, int(watermark) - int(self.options.lookback_s * 1000))

    def _contacts(self, state: RunState) -> str | None:
        pager = Pager(lambda body: self.deps.hubspot.search("contacts", body), list(state.windows), state.pos,
                      self.options.batch, self.options.cap, state.total, state.splits)
        for page in pager.pages():
            ids = [str(c["id"]) for c in page]
            addresses = {str((c.get("properties") or {}).get("email") or "").strip().lower() for c in page}
            emails = {a: self.events[a] for a in sorted(addresses) if a in self.events and a not in self.handled}
            self._handle(state, {cid: [] for cid in ids}, emails, seen=len(ids))
            state.windows, state.pos = list(pager.windows), pager.pos
            state.total, state.splits = pager.total, pager.splits
            if stop := self._step_done(state, emails):
                return stop
        return None

    def _leftover_emails(self, state: RunState) -> str | None:
        """Events of recipients no page held (their contact changed outside the range, or none has the address)."""
        left = sorted(set(self.events) - self.handled)
        for start in range(0, len(left), self.options.batch):
            emails = {a: self.events[a] for a in left[start:start + self.options.batch]}
            self._handle(state, {}, emails, seen=0)
            if stop := self._step_done(state, emails):
                return stop
        return None

    def _handle(self, state: RunState, contacts: dict[str, list[Any]], emails: dict[str, list[dict[str, Any]]], *,
                seen: int) -> None:
        payload = {"v": 1, "portal_id": self.deps.portal_id, "source": "reconcile", "contacts": contacts,
                   "emails": emails, "companies": {}, "with_history": True}
        counts = state.counts
        counts.pages += 1
        try:
            if self.options.dry_run:
                _, decisions, outcome = plan_inbox(self.deps, Inbox.of([payload]))
                written = sum(1 for d in decisions.values() if not d.is_noop)
                looked, rows = outcome.contacts, outcome.rows
                counts.skipped += outcome.skipped
            else:
                result = process_inbox(self.deps, Inbox.of([payload]), requeue=self.requeue)
                looked, written, rows = result["contacts"], result["written"], result["rows"]
                counts.deferred += result["deferred"]
                counts.skipped += result["skipped"]
        except HubSpotTransientError:
            raise
        except HubSpotError as exc:
            counts.failed += len(contacts) + len(emails)
            counts.contacts += seen
            log.warning("reconcile_page_failed", contacts=len(contacts), emails=len(emails), error=str(exc))
            if not self.options.dry_run:
                self.requeue(payload)  # RQ retries it; if it keeps failing, `lifecycle replay` finds it
            return
        counts.contacts += seen if contacts else looked
        counts.written += written
        counts.add_rows(rows)

    def _step_done(self, state: RunState, emails: Mapping[str, Any]) -> str | None:
        """Save the cursor after a page; a reason to stop, if there is one."""
        self._save(state, emails)
        self.reporter.advanced(state)
        if self.lock.lost.is_set():
            return f"lost the lock {LOCK_KEY} (another reconcile may have taken over)"
        if self.should_stop():
            return "asked to stop"
        return None

    def _save(self, state: RunState, emails: Mapping[str, Any]) -> None:
        self.handled.update(emails)
        if self.options.dry_run:
            return
        pipe = self.deps.redis.pipeline()
        pipe.set(CURSOR_KEY, state.to_json())
        if emails:
            pipe.sadd(CURSOR_EMAILS_KEY, *emails)
        pipe.execute()

    def _finish(self, report: Report) -> None:
        state, conn = report.state, self.deps.redis
        if report.completed and not self.options.dry_run:
            old = conn.get(WATERMARK_KEY)
            covers = self.options.mode != "since" or (old is not None and state.since <= int(old))
            pipe = conn.pipeline()
            if covers:
                pipe.set(WATERMARK_KEY, max(int(old or 0), state.until))
            pipe.delete(CURSOR_KEY, CURSOR_EMAILS_KEY)
            pipe.execute()
        c = state.counts
        last = {"finished_at": datetime.now(UTC).isoformat(timespec="seconds"), "since": state.since,
                "until": state.until, "contacts": c.contacts, "written": c.written, "email_events": c.email_events,
                "failed": c.failed, "deferred": c.deferred, "rows": dict(sorted(c.rows.items())),
                "splits": state.splits, "duration_s": report.duration_s, "dry_run": self.options.dry_run,
                "completed": report.completed, "resumed": report.resumed}
        conn.set(LAST_KEY, json.dumps(last, separators=(",", ":")))
        log.info("reconcile_finished", **{k: v for k, v in last.items() if k != "rows"})
