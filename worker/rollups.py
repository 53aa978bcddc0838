"""Company rollups (spec §6): account_status, poc_contact_id and the contacts' suppression flags.

Reads in batches: contact→company associations, then (under the companies' rollup locks)
company→contact associations, the companies, and the statuses and suppression flags of every
contact of those companies, read fresh (overlaid with the values this job has just written);
then `rules.rollup.rollup_company` decides, and one batched company update plus one batched
contact update write the result.

A company needs no member reads when the result provably follows from what the job knows: every
contact that brings it here only changed its status (no association change, merge or POC), the
company's `account_status` (read under its lock) is known and not the top status, and each
change either reaches at least that status, or stays below it before and after (so that contact
did not hold it). Then the account status is the highest of the current one and the new ones,
and no suppression flag changes (none of them is or becomes the top status, customer). Anything
else (a status moving down from the account's, customer involved, an empty account status,
an association change) takes the full path above.

One job at a time rolls up a company: the lock is `lc:lock:<portal>:company:<id>` (the
`ContactLocks` mechanism). A company whose lock another job holds is left to a later job
(`RollupReport.busy`, which the caller requeues): a rollup is level-triggered, so doing it
later, from what HubSpot holds then, is always right.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from rules.model import ContactRollupInput, RollupDecision
from rules.rollup import rollup_company
from worker.deps import Deps
from worker.locks import ContactLocks

log = structlog.get_logger(__name__)
LOCK_PREFIX = "company:"
Updates = dict[str, dict[str, str]]  # object id -> properties to write


@dataclass
class RollupReport:
    companies: int = 0
    companies_updated: int = 0
    contacts_updated: int = 0
    busy: set[str] = field(default_factory=set)  # companies another job is rolling up: to requeue


def company_locks(deps: Deps) -> ContactLocks:
    """Rollup locks on companies: `lc:lock:<portal>:company:<id>`."""
    return ContactLocks(deps.redis, deps.portal_id, ttl_s=deps.settings.worker.lock_ttl_s, prefix=LOCK_PREFIX)


def recompute(deps: Deps, contact_ids: Iterable[str], company_ids: Iterable[str] = (), *,
              written: Mapping[str, Mapping[str, str]] | None = None,
              poc_contacts: Iterable[str] = (), c2co: Mapping[str, list[str]] | None = None,
              status_changes: Mapping[str, tuple[str | None, str | None]] | None = None) -> RollupReport:
    """Recompute every company of `contact_ids` (plus `company_ids`) and write the changes.

    `written` holds what this job has just written (overlaid on what is read). `c2co` is the
    contacts' companies if the caller has read them already. `status_changes` maps the contacts
    that are here only because this job changed their status to (old, new) status: their
    companies may take the quick path (module docstring). Companies whose rollup lock another
    job holds are not recomputed: they are returned in `report.busy` for the caller to requeue
    (a POC set by this job is still written to them).
    """
    contact_ids = sorted(set(contact_ids) | set(poc_contacts))
    if c2co is None or any(cid not in c2co for cid in contact_ids):
        c2co = deps.hubspot.associations("contacts", "companies", contact_ids) if contact_ids else {}
    companies = sorted({c for ids in c2co.values() for c in ids} | set(company_ids))
    report = RollupReport(companies=len(companies))
    if not companies:
        return report
    poc_by_company = {company: cid for cid in poc_contacts for company in c2co.get(cid, [])}
    poc = deps.settings.policy.company.poc_contact_id
    with company_locks(deps) as locks:
        locked, report.busy = locks.acquire(companies)
        quick = _quick_candidates(locked, c2co, contact_ids, set(company_ids), poc_by_company,
                                  status_changes or {})
        company_updates, flags_by_company = _decide(deps, sorted(locked), written or {}, poc_by_company, quick)
        held = locks.still_held(locked)  # a lock lost meanwhile (a long stall): that rollup waits too
        report.busy |= locked - held
        company_updates = {c: u for c, u in company_updates.items() if c in held}
        for company in sorted(report.busy & poc_by_company.keys()):
            # The POC this job set depends on no member's state, and a requeued rollup would not know it.
            company_updates[company] = {poc: poc_by_company[company]}
        contact_updates: Updates = {}
        for company in sorted(held & flags_by_company.keys()):
            for cid, flags in flags_by_company[company].items():
                contact_updates.setdefault(cid, {}).update(flags)
        if company_updates:
            deps.hubspot.update_objects("companies", company_updates)
        if contact_updates:
            deps.hubspot.update_objects("contacts", contact_updates)
    if report.busy:
        log.info("rollup_deferred", companies=len(report.busy), why="another job is rolling them up")
    report.companies_updated = len(company_updates)
    report.contacts_updated = len(contact_updates)
    return report


Changes = list[tuple[str | None, str | None]]  # (old, new) status of a contact


def _quick_candidates(locked: Iterable[str], c2co: Mapping[str, list[str]], contact_ids: Iterable[str],
                      explicit: set[str], poc_by_company: Mapping[str, str],
                      status_changes: Mapping[str, tuple[str | None, str | None]]) -> dict[str, Changes]:
    """Companies that may skip the member reads, with the status changes that bring them here."""
    by_company: dict[str, Changes] = {}
    others: set[str] = set(explicit) | set(poc_by_company)
    for cid in contact_ids:
        for company in c2co.get(cid, []):
            if cid in status_changes:
                by_company.setdefault(company, []).append(status_changes[cid])
            else:
                others.add(company)
    return {c: ch for c, ch in by_company.items() if c in locked and c not in others}


def raised_status(current: str | None, changes: Changes, ranks: Mapping[str, int]) -> str | None:
    """The account status that follows from `current` and the members' `changes` alone, or None
    when it depends on the other members (see the module docstring)."""
    top = max(ranks, key=lambda v: ranks[v])
    if current not in ranks or current == top:
        return None
    if any(new not in ranks or new == top or old == top or (old is not None and old not in ranks)
           for old, new in changes):
        return None
    reached = [new for _, new in changes if ranks[new] >= ranks[current]]  # type: ignore[index]
    if reached:  # someone holds at least the account's status now: the highest of them is the max
        return max([current, *reached], key=lambda v: ranks[v])  # type: ignore[index]
    if any(old is not None and ranks[old] >= ranks[current] for old, _ in changes):
        return None  # it may have been the member holding the account's status, and moved down
    return current


def _decide(deps: Deps, companies: list[str], written: Mapping[str, Mapping[str, str]],
            poc_by_company: Mapping[str, str], quick: Mapping[str, Changes]) -> tuple[Updates, dict[str, Updates]]:
    """(company updates, contact flag updates by company) for `companies`, from fresh reads."""
    if not companies:
        return {}, {}
    policy = deps.settings.policy
    co = policy.company
    company_rows = deps.hubspot.read_objects("companies", companies, [co.account_status, co.poc_contact_id])
    ranks = {s.value: s.rank for s in policy.statuses}
    quick_updates: Updates = {}
    for company, changes in quick.items():
        current = (company_rows.get(company) or {}).get("properties", {}).get(co.account_status) or None
        raised = raised_status(current, changes, ranks) if company in company_rows else None
        if raised is not None:
            quick_updates[company] = {co.account_status: raised} if raised != current else {}
    companies = [c for c in companies if c not in quick_updates]
    if quick_updates:
        log.info("rollup_quick", companies=len(quick_updates), why="status only went up: no member reads")
    company_updates, flags = _decide_full(deps, companies, written, poc_by_company, company_rows)
    company_updates.update({c: u for c, u in quick_updates.items() if u})
    return company_updates, flags


def _decide_full(deps: Deps, companies: list[str], written: Mapping[str, Mapping[str, str]],
                 poc_by_company: Mapping[str, str], company_rows: Mapping[str, Any]
                 ) -> tuple[Updates, dict[str, Updates]]:
    """The full rollup of `companies`: their members' status and suppression, read fresh."""
    if not companies:
        return {}, {}
    policy = deps.settings.policy
    cp, co = policy.contact, policy.company
    co2c = deps.hubspot.associations("companies", "contacts", companies)
    members = sorted({c for ids in co2c.values() for c in ids})
    # Fresh, never the job's earlier read: another job's rollup may have changed the flags since
    # (docs/chaos.md, Finding 3).
    contact_rows: dict[str, dict[str, Any]] = {}
    if members:
        contact_rows = deps.hubspot.read_objects("contacts", members, [cp.status, cp.lead_gen_suppressed])

    def props(cid: str) -> dict[str, str | None]:
        current = dict((contact_rows.get(cid) or {}).get("properties") or {})
        current.update(written.get(cid, {}))
        return current

    found = [c for c in companies if c in company_rows]
    for company in sorted(set(companies) - set(found)):
        log.info("rollup_company_skipped", company_id=company, why="company not found")

    def decide_all(elsewhere: Mapping[str, set[str]]) -> dict[str, RollupDecision]:
        decisions = {}
        for company in found:
            inputs = [ContactRollupInput(cid, props(cid).get(cp.status), props(cid).get(cp.lead_gen_suppressed),
                                         suppressed_elsewhere=cid in elsewhere.get(company, set()))
                      for cid in co2c.get(company, []) if cid in contact_rows or cid in written]
            decisions[company] = rollup_company(company, company_rows[company]["properties"], inputs, policy)
        return decisions

    first = decide_all({})
    decisions = decide_all(_suppressed_elsewhere(deps, first, company_rows, co2c))
    company_updates: Updates = {}
    contact_updates: dict[str, Updates] = {}
    for company, decision in decisions.items():
        updates = dict(decision.company_updates)
        poc = poc_by_company.get(company)
        if poc and company_rows[company]["properties"].get(co.poc_contact_id) != poc:
            updates[co.poc_contact_id] = poc
        if updates:
            company_updates[company] = updates
        if decision.contact_updates:
            contact_updates[company] = {cid: dict(flags) for cid, flags in decision.contact_updates.items()}
    return company_updates, contact_updates


def _suppressed_elsewhere(deps: Deps, first: Mapping[str, RollupDecision], company_rows: Mapping[str, Any],
                          co2c: Mapping[str, list[str]]) -> dict[str, set[str]]:
    """For each company, its contacts that another company keeps suppressed (a customer account).

    A contact may belong to several companies; without this, a non-customer company would
    write `lead_gen_suppressed=false` over the customer company's `true`. Companies of this
    batch are known; other companies are read only for contacts about to be un-suppressed.
    """
    policy = deps.settings.policy
    ap = policy.company.account_status
    top = max(policy.statuses, key=lambda s: s.rank).value
    status = {c: d.company_updates.get(ap) or company_rows[c]["properties"].get(ap) for c, d in first.items()}
    customers = {c for c, st in status.items() if st == top}
    result: dict[str, set[str]] = {}
    for company in first:
        for other in customers - {company}:
            shared = set(co2c.get(company, [])) & set(co2c.get(other, []))
            result.setdefault(company, set()).update(shared)
    flag = policy.contact.lead_gen_suppressed
    unsuppress = sorted({cid for d in first.values() for cid, f in d.contact_updates.items() if f.get(flag) == "false"})
    if not unsuppress:
        return result
    c2co = deps.hubspot.associations("contacts", "companies", unsuppress)
    outside = sorted({c for ids in c2co.values() for c in ids if c not in first})
    rows = deps.hubspot.read_objects("companies", outside, [ap]) if outside else {}
    outside_customers = {c for c, row in rows.items() if (row.get("properties") or {}).get(ap) == top}
    for cid in unsuppress:
        if outside_customers & set(c2co.get(cid, [])):
            for company in first:
                if cid in co2c.get(company, []):
                    result.setdefault(company, set()).add(cid)
    return result
