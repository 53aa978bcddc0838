"""Company rollups (spec §6): account_status, poc_contact_id and the contacts' suppression flags.

Reads in batches: contact→company associations, company→contact associations, the
companies, and the statuses of every contact of those companies (overlaid with the values
this job has just written); then `rules.rollup.rollup_company` decides, and one batched
company update plus one batched contact update write the result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from rules.model import ContactRollupInput, RollupDecision
from rules.rollup import rollup_company
from worker.deps import Deps

log = structlog.get_logger(__name__)


@dataclass
class RollupReport:
    companies: int = 0
    companies_updated: int = 0
    contacts_updated: int = 0


def recompute(deps: Deps, contact_ids: Iterable[str], company_ids: Iterable[str] = (), *,
              written: Mapping[str, Mapping[str, str]] | None = None,
              known: Mapping[str, Mapping[str, str | None]] | None = None,
              poc_contacts: Iterable[str] = ()) -> RollupReport:
    """Recompute every company of `contact_ids` (plus `company_ids`) and write the changes.

    `known` holds the properties of contacts this job has just read (so they are not read
    again); `written` what it has just written (overlaid on what is read or known).
    """
    policy = deps.settings.policy
    cp, co = policy.contact, policy.company
    written = written or {}
    known = known or {}
    contact_ids = sorted(set(contact_ids) | set(poc_contacts))
    c2co = deps.hubspot.associations("contacts", "companies", contact_ids) if contact_ids else {}
    companies = sorted({c for ids in c2co.values() for c in ids} | set(company_ids))
    report = RollupReport(companies=len(companies))
    if not companies:
        return report
    co2c = deps.hubspot.associations("companies", "contacts", companies)
    members = sorted({c for ids in co2c.values() for c in ids})
    unknown = [cid for cid in members if cid not in known]
    contact_rows: dict[str, dict[str, Any]] = {c: {"properties": dict(known[c])} for c in members if c in known}
    if unknown:
        contact_rows.update(deps.hubspot.read_objects("contacts", unknown, [cp.status, cp.lead_gen_suppressed]))
    company_rows = deps.hubspot.read_objects("companies", companies, [co.account_status, co.poc_contact_id])

    def props(cid: str) -> dict[str, str | None]:
        current = dict((contact_rows.get(cid) or {}).get("properties") or {})
        current.update(written.get(cid, {}))
        return current

    poc_by_company = {company: cid for cid in poc_contacts for company in c2co.get(cid, [])}
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
    company_updates: dict[str, dict[str, str]] = {}
    contact_updates: dict[str, dict[str, str]] = {}
    for company, decision in decisions.items():
        updates = dict(decision.company_updates)
        poc = poc_by_company.get(company)
        if poc and company_rows[company]["properties"].get(co.poc_contact_id) != poc:
            updates[co.poc_contact_id] = poc
        if updates:
            company_updates[company] = updates
        for cid, flags in decision.contact_updates.items():
            contact_updates.setdefault(cid, {}).update(flags)
    if company_updates:
        deps.hubspot.update_objects("companies", company_updates)
    if contact_updates:
        deps.hubspot.update_objects("contacts", contact_updates)
    report.companies_updated = len(company_updates)
    report.contacts_updated = len(contact_updates)
    return report


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
