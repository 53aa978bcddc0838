"""Company rollups (spec §6): account_status, poc_contact_id and the contacts' suppression flags.

Reads in batches: contact→company associations, then (under the companies' rollup locks)
company→contact associations, the companies, and the statuses and suppression flags of every
contact of those companies, read fresh (overlaid with the values this job has just written);
then `rules.rollup.rollup_company` decides, and one batched company update plus one batched
contact update write the result.

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
              poc_contacts: Iterable[str] = ()) -> RollupReport:
    """Recompute every company of `contact_ids` (plus `company_ids`) and write the changes.

    `written` holds what this job has just written (overlaid on what is read). Companies whose
    rollup lock another job holds are not recomputed: they are returned in `report.busy` for the
    caller to requeue (a POC set by this job is still written to them).
    """
    contact_ids = sorted(set(contact_ids) | set(poc_contacts))
    c2co = deps.hubspot.associations("contacts", "companies", contact_ids) if contact_ids else {}
    companies = sorted({c for ids in c2co.values() for c in ids} | set(company_ids))
    report = RollupReport(companies=len(companies))
    if not companies:
        return report
    poc_by_company = {company: cid for cid in poc_contacts for company in c2co.get(cid, [])}
    poc = deps.settings.policy.company.poc_contact_id
    with company_locks(deps) as locks:
        locked, report.busy = locks.acquire(companies)
        company_updates, flags_by_company = _decide(deps, sorted(locked), written or {}, poc_by_company)
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


def _decide(deps: Deps, companies: list[str], written: Mapping[str, Mapping[str, str]],
            poc_by_company: Mapping[str, str]) -> tuple[Updates, dict[str, Updates]]:
    """(company updates, contact flag updates by company) for `companies`, from fresh reads."""
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
    company_rows = deps.hubspot.read_objects("companies", companies, [co.account_status, co.poc_contact_id])

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
