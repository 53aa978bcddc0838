"""One job's work: events → triggers → locks → batch read → rules → effects → write → rollups.

Level-triggered: the contact's current state is read from HubSpot and the rules decide
from it; the events only say which contacts to look at and add facts state cannot show.
So redelivery, reordering, replay and reconcile all run this same code, safely.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import structlog

from rules.errors import TriggerError
from rules.lifecycle import decide
from rules.model import ActionType, Contact, Decision, Trigger, TriggerKind
from rules.triggers import parse_contact, parse_trigger
from worker import effects, metrics, rollup_due, rollups
from worker.deps import Deps
from worker.gather import gather
from worker.hubspot import BATCH, chunks
from worker.locks import ContactLocks

log = structlog.get_logger(__name__)
WRITE_BATCH = BATCH  # contacts re-read then written together (HubSpot's batch size)
PREFETCH_COMPANIES_AT = 1000  # contacts in a job: read all their companies while deciding (one assoc call per 1,000)
Requeue = Callable[[dict[str, Any]], None]


@dataclass
class Inbox:
    """The events of one or more job payloads, grouped by contact."""

    portal_id: int | None = None
    contacts: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    emails: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    companies: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    deferrals: int = 0
    with_history: bool = False  # reconcile: read property history up front

    @classmethod
    def of(cls, payloads: Iterable[Mapping[str, Any]]) -> Inbox:
        inbox = cls()
        for p in payloads:
            inbox.portal_id = inbox.portal_id or p.get("portal_id")
            inbox.deferrals = max(inbox.deferrals, int(p.get("deferrals", 0) or 0))
            inbox.with_history = inbox.with_history or bool(p.get("with_history"))
            for key in ("contacts", "emails", "companies"):
                for ident, raws in (p.get(key) or {}).items():
                    getattr(inbox, key)[str(ident)].extend(raws)
        return inbox

    def payload_for(self, contact_ids: set[str], email_of: Mapping[str, str],
                    company_ids: Iterable[str] = ()) -> dict[str, Any]:
        """A job payload holding only the events of `contact_ids` (for deferral), and a rollup
        of `company_ids` (companies whose rollup another job holds).

        Email events already resolved to a contact travel under that contact's id: a deferred job
        may come round many times while another job holds the lock, and must not search HubSpot
        for the same addresses each time (searches have a limit of their own)."""
        contacts = {c: list(self.contacts[c]) for c in sorted(contact_ids) if c in self.contacts}
        for email, raws in self.emails.items():
            cid = email_of.get(email)
            if cid in contact_ids:
                contacts.setdefault(cid, []).extend(raws)
        return {"v": 1, "portal_id": self.portal_id, "source": "deferred", "deferrals": self.deferrals + 1,
                "with_history": self.with_history, "contacts": contacts, "emails": {},
                "companies": {c: [] for c in sorted(company_ids)}}

    @property
    def size(self) -> int:
        return len(self.contacts) + len(self.emails)


@dataclass
class Outcome:
    contacts: int = 0
    written: int = 0
    noop: int = 0
    skipped: int = 0
    deferred: int = 0
    bad_events: int = 0
    rows: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def as_json(self, extra: Mapping[str, Any]) -> dict[str, Any]:
        return {"contacts": self.contacts, "written": self.written, "noop": self.noop, "skipped": self.skipped,
                "deferred": self.deferred, "bad_events": self.bad_events, "rows": dict(self.rows), **extra}


def _triggers(deps: Deps, raws: list[dict[str, Any]], outcome: Outcome) -> list[Trigger]:
    if not raws:  # no event: look at the contact as it is (reconcile, backfill)
        return [Trigger(kind=TriggerKind.RECONCILE, occurred_at=deps.clock_ms())]
    found = []
    for raw in raws:
        try:
            trigger = parse_trigger(raw, deps.settings.policy)
        except TriggerError as exc:
            outcome.bad_events += 1
            log.warning("event_skipped", why=str(exc))
            continue
        if not trigger.by_self:
            found.append(trigger)
    return found


def collect_triggers(deps: Deps, inbox: Inbox, outcome: Outcome) -> tuple[dict[str, list[Trigger]], dict[str, str]]:
    """Triggers by contact id (email events resolved by address) and email → contact id."""
    by_contact: dict[str, list[Trigger]] = defaultdict(list)
    for cid, raws in inbox.contacts.items():
        by_contact[cid].extend(_triggers(deps, raws, outcome))
    email_of: dict[str, str] = {}
    if inbox.emails:
        email_of = deps.hubspot.find_contacts_by_email(inbox.emails)
        for email, raws in inbox.emails.items():
            cid = email_of.get(email)
            if cid is None:
                outcome.skipped += 1
                log.info("email_event_skipped", why="no contact has this address", events=len(raws))
                continue
            by_contact[cid].extend(_triggers(deps, raws, outcome))
    return {c: t for c, t in by_contact.items() if t}, email_of


def decide_all(deps: Deps, ids: list[str], triggers: Mapping[str, list[Trigger]], outcome: Outcome, *,
               with_history: bool = False) -> tuple[dict[str, Contact], dict[str, Decision]]:
    """Batch-read the contacts and decide; re-read with history where a revert needs it."""
    policy = deps.settings.policy
    history = policy.history_properties if with_history else ()
    rows = deps.hubspot.read_objects("contacts", ids, policy.read_properties, history)
    return decide_read(deps, ids, rows, triggers, outcome)


def decide_read(deps: Deps, ids: list[str], rows: Mapping[str, dict[str, Any]], triggers: Mapping[str, list[Trigger]],
                outcome: Outcome) -> tuple[dict[str, Contact], dict[str, Decision]]:
    """Decide for the contacts read (`rows`, of `ids`); re-read with history where a revert needs it."""
    policy = deps.settings.policy
    for cid in sorted(set(ids) - set(rows)):
        outcome.skipped += 1
        log.info("contact_skipped", contact_id=cid, why="HubSpot no longer has this contact")
    now = deps.clock_ms()
    contacts = {cid: parse_contact(raw) for cid, raw in rows.items()}
    decisions = {cid: decide(c, triggers.get(cid, []), policy, now) for cid, c in contacts.items()}
    need = sorted(cid for cid, d in decisions.items() if d.needs_history)
    if need:
        again = deps.hubspot.read_objects("contacts", need, policy.read_properties, policy.history_properties)
        for cid, raw in again.items():
            contacts[cid] = parse_contact(raw)
            decisions[cid] = decide(contacts[cid], triggers.get(cid, []), policy, now)
    return contacts, decisions


class _Phases:
    """Wall time of a job's phases, for its `job_processed` line (where a big job's seconds go)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._mark = time.perf_counter()

    def done(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(self.seconds.get(name, 0.0) + now - self._mark, 3)
        self._mark = now


def process_inbox(deps: Deps, inbox: Inbox, *, requeue: Requeue) -> dict[str, Any]:
    """Apply the rules to every contact of `inbox` and write the results back."""
    outcome = Outcome()
    phase = _Phases()
    with ContactLocks(deps.redis, deps.portal_id, ttl_s=deps.settings.worker.lock_ttl_s) as locks, \
            ThreadPoolExecutor(1, thread_name_prefix="prefetch") as pool:
        found = gather(deps, inbox.contacts, inbox.emails, lambda raws: _triggers(deps, raws, outcome), locks,
                       with_history=inbox.with_history, pool=pool)
        phase.done("gather")
        triggers, email_of, busy = found.triggers, found.email_of, set(found.busy)
        prefetch = _prefetch_companies(deps, found.locked, pool)
        for cid in sorted(found.gone):
            log.info("contact_skipped", contact_id=cid, why="deleted")
        outcome.skipped += len(found.gone) + found.unresolved
        contacts, decisions = (decide_read(deps, sorted(found.locked), found.rows, triggers, outcome)
                               if found.locked else ({}, {}))
        updates = {cid: dict(d.updates) for cid, d in decisions.items() if d.updates}
        phase.done("decide")
        due = rollup_due.owed(deps, decisions)  # rollups a run that died after its write still owes
        c2co = _companies_of(deps, triggers, decisions, due, prefetch.result() if prefetch else None)
        phase.done("companies")
        report = effects.perform(deps, contacts, decisions, updates, c2co=c2co)
        phase.done("effects")
        held = locks.still_held(updates)
        rollup_contacts, poc_contacts = _rollup_contacts(triggers, decisions), set(report.poc_contacts)
        written = _write_unchanged(deps, contacts, {cid: u for cid, u in updates.items() if cid in held},
                                   lambda ids: rollup_due.record(deps, rollup_contacts & ids, poc_contacts & ids))
        busy |= (set(updates) - held) | written.moved
        writes, recorded, missing = written.writes, written.recorded, written.missing
        phase.done("write")
        busy_companies = _rollup(deps, inbox, triggers, contacts, decisions, writes, report, c2co, due)
        phase.done("rollup")
    if busy or busy_companies:
        requeue(inbox.payload_for(busy, email_of, busy_companies))
    rollup_due.settle(deps, recorded | due.keys())
    if busy:
        log.info("contacts_deferred", contacts=len(busy), why="another job holds their lock")
    _count(outcome, decisions, writes, missing, busy)
    for name in ("written", "noop", "deferred"):
        metrics.CONTACTS.labels(outcome=name).inc(getattr(outcome, name))
    _observe_lag(deps, triggers, writes)
    phase.done("finish")
    return outcome.as_json({"owners_assigned": report.owners_assigned, "tasks_created": report.tasks_created,
                            "deals_created": report.deals_created, "unsubscribed": report.unsubscribed,
                            "phases_s": phase.seconds})


@dataclass
class _Written:
    writes: dict[str, dict[str, str]] = field(default_factory=dict)  # sent to HubSpot
    moved: set[str] = field(default_factory=set)  # someone changed them since this job read them
    recorded: set[str] = field(default_factory=set)  # rollups recorded as due (worker.rollup_due)
    missing: list[str] = field(default_factory=list)  # HubSpot no longer has them


def _write_unchanged(deps: Deps, contacts: Mapping[str, Contact], updates: Mapping[str, dict[str, str]],
                     record: Callable[[set[str]], set[str]]) -> _Written:
    """Write `updates` a batch at a time: re-read the batch (`_changed_since_read`), record the
    rollups its writes will owe (`record`), write the contacts nobody changed. The batches go side
    by side, each its own re-read then write: one round trip between a batch's re-read and its
    write, rather than all the re-reads, then all the writes. The first error raises once the
    other batches are done (a batch written is written; the job's rerun decides from it)."""
    done = _Written()
    parts = [sorted(part) for part in chunks(sorted(updates), WRITE_BATCH)]

    def one(ids: list[str]) -> tuple[set[str], dict[str, dict[str, str]], set[str], list[str]]:
        moved = _changed_since_read(deps, contacts, set(ids))
        writes = {cid: updates[cid] for cid in ids if cid not in moved}
        recorded = record(set(writes))
        missing = deps.hubspot.update_objects("contacts", writes) if writes else []
        return moved, writes, recorded, missing

    if not parts:
        return done
    with ThreadPoolExecutor(min(len(parts), deps.settings.worker.http_concurrency),
                            thread_name_prefix="write") as pool:
        futures = [pool.submit(one, ids) for ids in parts]
    for future in futures:
        moved, writes, recorded, missing = future.result()
        done.moved |= moved
        done.writes.update(writes)
        done.recorded |= recorded
        done.missing += missing
    return done


def _changed_since_read(deps: Deps, contacts: Mapping[str, Contact], ids: set[str]) -> set[str]:
    """Contacts whose lifecycle properties someone changed since this job read them.

    HubSpot has no conditional update, and a job's side effects take time: re-reading right
    before the write shrinks the window in which a rep's change could be overwritten by a
    decision made on older state to one round trip. Such contacts are deferred, not written.
    """
    if not ids:
        return set()
    c = deps.settings.policy.contact
    names = (c.status, c.milestone, c.reason)
    now = deps.hubspot.read_objects("contacts", sorted(ids), list(names))
    return {cid for cid, row in now.items()
            if any((row["properties"].get(n) or None) != contacts[cid].get(n) for n in names)}


_RELINKED = (TriggerKind.ASSOCIATION_CHANGED, TriggerKind.MERGED)


def _rollup_contacts(triggers: Mapping[str, list[Trigger]], decisions: Mapping[str, Decision]) -> set[str]:
    contacts = {cid for cid, d in decisions.items() if any(a.type == ActionType.ROLLUP_COMPANIES for a in d.actions)}
    return contacts | {cid for cid, ts in triggers.items() if cid in decisions and any(t.kind in _RELINKED for t in ts)}


def _companies_of(deps: Deps, triggers: Mapping[str, list[Trigger]], decisions: Mapping[str, Decision],
                  due: Mapping[str, str], prefetched: Mapping[str, list[str]] | None = None) -> dict[str, list[str]]:
    """The companies of every contact the deals (their names) and the rollup need, in one read
    (or taken from `prefetched`, the companies of every contact a big job holds)."""
    wanted = _rollup_contacts(triggers, decisions) | set(due) | {
        cid for cid, d in decisions.items()
        if any(a.type in (ActionType.CREATE_DEAL, ActionType.SET_COMPANY_POC) for a in d.actions)}
    known = {cid: list(prefetched[cid]) for cid in wanted if prefetched is not None and cid in prefetched}
    rest = sorted(wanted - known.keys())
    if rest:
        known.update(deps.hubspot.associations("contacts", "companies", rest))
    return known


def _prefetch_companies(deps: Deps, locked: set[str], pool: ThreadPoolExecutor) -> Future[dict[str, list[str]]] | None:
    """For a job of PREFETCH_COMPANIES_AT contacts or more, read all their companies while it decides.

    Which contacts need their companies (the rollup's, the deals') is known only after deciding,
    which for a burst's job is a few hundred ms of CPU; the read is HubSpot's latency. At 1,000
    contacts a call, reading them all costs at most one call more than reading those needed (none
    in bench-e2e's burst: 2 either way), and the read no longer waits for the deciding. A small
    job reads only what it needs, afterwards (one call, or none).
    """
    if len(locked) < PREFETCH_COMPANIES_AT:
        return None
    return pool.submit(deps.hubspot.associations, "contacts", "companies", sorted(locked))


def _rollup(deps: Deps, inbox: Inbox, triggers: Mapping[str, list[Trigger]], read: Mapping[str, Contact],
            decisions: Mapping[str, Decision], writes: Mapping[str, Mapping[str, str]],
            report: effects.EffectsReport, c2co: Mapping[str, list[str]], due: Mapping[str, str]) -> set[str]:
    """Recompute the companies this job touched, and those an earlier run owes (`due`); returns
    those another job is rolling up (to requeue)."""
    contacts = _rollup_contacts(triggers, decisions) | set(due)
    poc_contacts = sorted(set(report.poc_contacts) | set(rollup_due.pocs(due)))
    if not (contacts or inbox.companies or poc_contacts):
        return set()
    # The members' status and suppression flag are read afresh, not taken from this job's read
    # at its start: another job's rollup may have written them since (docs/chaos.md, Finding 3).
    # Only a contact this job wrote, under its lock, and only for a status change, brings its own
    # (old, new) status: its companies may then skip the member reads (worker/rollups.py).
    status = deps.settings.policy.contact.status
    changes = {cid: (read[cid].get(status), writes[cid].get(status, read[cid].get(status))) for cid in contacts
               if cid in writes and cid in read and not any(t.kind in _RELINKED for t in triggers.get(cid, []))}
    return rollups.recompute(deps, contacts, inbox.companies, written=writes, poc_contacts=poc_contacts,
                             c2co=c2co, status_changes=changes).busy


def _count(outcome: Outcome, decisions: Mapping[str, Decision], writes: Mapping[str, Any], missing: list[str],
           busy: set[str]) -> None:
    outcome.contacts = len(decisions)
    outcome.written = len(writes) - len(missing)
    outcome.noop = sum(1 for d in decisions.values() if d.is_noop)
    outcome.deferred = len(busy)
    outcome.skipped += len(missing)
    for d in decisions.values():
        for row in d.rows:
            outcome.rows[row] += 1


def _observe_lag(deps: Deps, triggers: Mapping[str, list[Trigger]], writes: Mapping[str, Any]) -> None:
    now = deps.clock_ms()
    for cid in writes:
        latest = max((t.occurred_at for t in triggers.get(cid, [])), default=0)
        if latest:
            metrics.LAG.observe(max(0.0, (now - latest) / 1000.0))


def plan_inbox(deps: Deps, inbox: Inbox) -> tuple[dict[str, Contact], dict[str, Decision], Outcome]:
    """Read-only: what `process_inbox` would decide now for every contact of `inbox`
    (replay --dry-run, reconcile --dry-run). Reads from HubSpot, writes nothing."""
    outcome = Outcome()
    triggers, _ = collect_triggers(deps, inbox, outcome)
    wanted = sorted(cid for cid, ts in triggers.items() if not all(t.kind == TriggerKind.DELETED for t in ts))
    contacts, decisions = decide_all(deps, wanted, triggers, outcome, with_history=inbox.with_history)
    _count(outcome, decisions, {}, [], set())
    return contacts, decisions, outcome
