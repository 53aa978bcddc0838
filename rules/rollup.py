"""rollup_company(): a company's account status and its contacts' suppression flags (spec §6)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rules.model import ContactRollupInput, RollupDecision
from rules.policy import Policy, StatusDef


def rollup_company(
    company_id: str,
    company_properties: Mapping[str, str | None],
    contacts: Sequence[ContactRollupInput],
    policy: Policy,
) -> RollupDecision:
    """Decide `account_status` (the highest status rank of the contacts) and `lead_gen_suppressed`.

    No contact with a known status leaves `account_status` as it is. When the account is the
    top status (customer), every non-customer contact is suppressed ("true"), else "false".
    Only values that change are written; a no-op writes nothing.
    """
    names = policy.company
    current = company_properties.get(names.account_status) or None
    top = _highest(contacts, policy)
    account = top.value if top else current
    company_updates = {names.account_status: account} if account and account != current else {}
    customer = _customer(policy)
    suppress = account is not None and account == customer
    contact_updates: dict[str, Mapping[str, str]] = {}
    for contact in contacts:
        if customer is not None and contact.status == customer:
            continue  # the POC (a customer itself) keeps its own flag
        wanted = "true" if suppress or contact.suppressed_elsewhere else "false"
        if (contact.lead_gen_suppressed or "false").lower() != wanted:
            contact_updates[contact.id] = {policy.contact.lead_gen_suppressed: wanted}
    return RollupDecision(
        company_id,
        company_updates,
        contact_updates,
        _reason(company_id, current, account, top, len(contacts), contact_updates),
    )


def _highest(contacts: Sequence[ContactRollupInput], policy: Policy) -> StatusDef | None:
    known = [s for s in (policy.status(c.status) for c in contacts) if s is not None]
    return max(known, key=lambda s: s.rank, default=None)


def _customer(policy: Policy) -> str | None:
    """The top-ranked status (customer): nothing leaves it, and it suppresses lead generation."""
    return max(policy.statuses, key=lambda s: s.rank).value if policy.statuses else None


def _reason(
    company_id: str,
    current: str | None,
    account: str | None,
    top: StatusDef | None,
    count: int,
    contact_updates: Mapping[str, Mapping[str, str]],
) -> str:
    if top is None:
        status = f"no contact with a known status among {count}: account_status stays {current or '(empty)'}"
    elif account != current:
        status = f"account_status {current or '(empty)'} → {account} (highest status of {count} contacts)"
    else:
        status = f"account_status stays {account} (highest status of {count} contacts)"
    flags = f"; lead_gen_suppressed changes for {len(contact_updates)} contact(s)" if contact_updates else ""
    return " ".join(f"Company {company_id}: {status}{flags}.".split())  # one line, whatever the values
