"""A job's contacts, locked and read: contact events first, then the email events they resolve.

An email event names an address, not a contact. Most addresses of a burst belong to contacts the
job reads anyway, for their own events: their `email` property resolves those events with no
search at all. Only the addresses left over are searched (batched IN searches, which have a rate
limit of their own), and the contacts found are locked and read in a second round. The lock is
always taken before the read, as everywhere in the worker (no lost updates).

A big job (a burst's: `READ_AHEAD_AT` contacts or more) reads its contacts while it parses their
events, rather than after: the parsing is a few hundred ms of CPU, the read is HubSpot's latency
(and HubSpot's work), and each waited for the other. Contacts whose events turn out to ask for
nothing (only the app's own echoes, deletions) are then read for nothing, at most a call more in
a burst's thousands; a small job parses first and reads only what it needs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any

import structlog

from rules.model import Trigger, TriggerKind
from worker.deps import Deps
from worker.locks import ContactLocks

log = structlog.get_logger(__name__)
Parse = Callable[[list[dict[str, Any]]], list[Trigger]]
READ_AHEAD_AT = 1000  # contacts locked by id: read them while their events are parsed
Rows = dict[str, dict[str, Any]]


@dataclass
class Gathered:
    triggers: dict[str, list[Trigger]] = field(default_factory=dict)  # contact id -> its triggers
    email_of: dict[str, str] = field(default_factory=dict)  # address (as in the inbox) -> contact id
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # contacts read, under their lock
    locked: set[str] = field(default_factory=set)
    busy: set[str] = field(default_factory=set)  # another job holds their lock
    gone: set[str] = field(default_factory=set)  # deleted: nothing to do
    unresolved: int = 0  # addresses no contact has


def gather(deps: Deps, contacts: Mapping[str, list[dict[str, Any]]], emails: Mapping[str, list[dict[str, Any]]],
           parse: Parse, locks: ContactLocks, *, with_history: bool = False,
           pool: Executor | None = None) -> Gathered:
    """Lock and read the contacts of `contacts` (by id) and `emails` (by address); `pool` runs
    a big job's read while its events are parsed."""
    g = Gathered()
    # Lock before parsing: a burst's job parses thousands of events, and a job that starts meanwhile
    # would otherwise take some of these contacts first (and this job would defer them). Contacts
    # that turn out to have nothing to do (only echoes of our own writes, deleted) are let go below.
    early, _ = locks.acquire(sorted(contacts))
    ahead: Future[Rows] | None = None
    if pool is not None and len(early) >= READ_AHEAD_AT:
        ahead = pool.submit(_read, deps, sorted(early), with_history)
    by_contact: dict[str, list[Trigger]] = defaultdict(list)
    for cid, raws in contacts.items():
        by_contact[cid].extend(parse(raws))
    _lock_and_read(deps, g, by_contact, locks, with_history, read_ahead=(early, ahead.result()) if ahead else None)
    if emails:
        g.email_of = _resolve(deps, emails, g.rows)
        for email, raws in emails.items():
            cid = g.email_of.get(email)
            if cid is None:
                g.unresolved += 1
                log.info("email_event_skipped", why="no contact has this address", events=len(raws))
                continue
            by_contact[cid].extend(parse(raws))
        _lock_and_read(deps, g, by_contact, locks, with_history)
    locks.release_some(early - g.locked)
    g.triggers = {c: ts for c, ts in by_contact.items() if ts}
    return g


def _read(deps: Deps, ids: list[str], with_history: bool) -> Rows:
    policy = deps.settings.policy
    history = policy.history_properties if with_history else ()
    return deps.hubspot.read_objects("contacts", ids, policy.read_properties, history)


def _lock_and_read(deps: Deps, g: Gathered, by_contact: Mapping[str, list[Trigger]], locks: ContactLocks,
                   with_history: bool, read_ahead: tuple[set[str], Rows] | None = None) -> None:
    """Lock the contacts not seen yet that have something to do, and read the ones locked
    (`read_ahead`: contacts already read under their lock, and their rows)."""
    seen = g.locked | g.busy | g.gone
    fresh = {c: ts for c, ts in by_contact.items() if ts and c not in seen}
    g.gone |= {c for c, ts in fresh.items() if all(t.kind == TriggerKind.DELETED for t in ts)}
    wanted = sorted(set(fresh) - g.gone)
    if not wanted:
        return
    locked, busy = locks.acquire(wanted)
    locked |= set(wanted) & locks.held  # taken before parsing (gather)
    g.locked |= locked
    g.busy |= busy
    if read_ahead is not None:
        done, rows = read_ahead
        g.rows.update((cid, row) for cid, row in rows.items() if cid in locked)
        locked = locked - done
    if locked:
        g.rows.update(_read(deps, sorted(locked), with_history))


def _resolve(deps: Deps, emails: Iterable[str], rows: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Address -> contact id: from the contacts read, then one batched search for the rest."""
    prop = deps.settings.policy.contact.email
    by_address = {_norm((row.get("properties") or {}).get(prop)): cid for cid, row in rows.items()}
    by_address.pop("", None)
    found = {e: by_address[_norm(e)] for e in emails if _norm(e) in by_address}
    rest = [e for e in emails if e not in found]
    if rest:
        searched = deps.hubspot.find_contacts_by_email(rest)
        found.update({e: searched[_norm(e)] for e in rest if _norm(e) in searched})
    return found


def _norm(email: str | None) -> str:
    return (email or "").strip().lower()
