"""Deterministic demo data: ~50 companies and ~500 contacts in realistic lifecycle states, with the
history the integration and reps would have written (lifecycle-spec.md §1-§6)."""

from __future__ import annotations

import random

from .config import SandboxConfig
from .model import CRM_UI, INTEGRATION, Actor
from .store import Store
from .timeutil import now_ms

__all__ = ["populate", "VERTICAL_OWNERS"]

DAY = 86_400_000
VERTICAL_OWNERS = {"marketplace": ("101", "102"), "retail": ("201", "202"), "wholesale": ("301", "302")}
_FIRST = (
    "Ava",
    "Ben",
    "Chloe",
    "Daniel",
    "Ella",
    "Felix",
    "Grace",
    "Hugo",
    "Isla",
    "Jonas",
    "Kira",
    "Leo",
    "Mila",
    "Noah",
    "Olivia",
    "Paul",
    "Quinn",
    "Rosa",
    "Sami",
    "Tara",
    "Umar",
    "Vera",
    "Wes",
    "Xena",
    "Yusuf",
    "Zoe",
)
_LAST = (
    "Adams",
    "Brooks",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Hansen",
    "Ito",
    "Jensen",
    "Khan",
    "Larsen",
    "Meyer",
    "Nakamura",
    "Owens",
    "Petrov",
    "Quist",
    "Rossi",
    "Silva",
    "Tanaka",
    "Ueda",
    "Varga",
    "Weber",
    "Young",
    "Zhang",
)
_ADJ = ("Blue", "Bright", "Golden", "Green", "Swift", "Silver", "North", "Urban", "Prime", "Bold")
_NOUN = ("Harbor", "Market", "Goods", "Supply", "Trade", "Outlet", "Crafts", "Depot", "Bazaar", "Works")
_STATUS_WEIGHTS = (("prospect", 50), ("mql", 20), ("srl", 12), ("sql", 18))
_RANK = {"prospect": 1, "mql": 2, "srl": 3, "sql": 4, "customer": 5}
_MILESTONES = {
    "prospect": (("new", 40), ("received_campaigns", 52), ("dead", 8)),
    "mql": (("assigned", 60), ("in_review", 32), ("dead", 8)),
    "srl": (("return_to_nurture", 50), ("unqualified", 42), ("dead", 8)),
    "sql": (("working", 70), ("contract_negotiations", 25), ("dead", 5)),
    "customer": (("active", 85), ("inactive", 10), ("out_of_business", 5)),
}
_REASONS = {
    "return_to_nurture": ("unable_to_contact", "not_a_good_fit_now", "no_budget_now", "other_nurture"),
    "unqualified": ("do_not_call", "invalid_email", "never_a_good_fit", "other_unqualified"),
}
_LIFECYCLE = {
    "prospect": "lead",
    "mql": "marketingqualifiedlead",
    "srl": "lead",
    "sql": "salesqualifiedlead",
    "customer": "customer",
}


def _pick(rng: random.Random, weighted: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


def _rep(owner_id: str) -> Actor:
    user_id = 1000 + int(owner_id)
    return Actor(CRM_UI, f"userId:{user_id}", user_id)


def populate(
    store: Store, config: SandboxConfig, rng: random.Random, companies: int = 50, per_company: int = 10
) -> None:
    """Create the demo portal's records (call inside store.silenced())."""
    now = now_ms()
    importer, worker = Actor("IMPORT"), Actor(INTEGRATION, str(config.app_id))
    for c in range(companies):
        name = f"{_ADJ[c % 10]} {_NOUN[(c // 10 + c) % 10]} {('Co', 'Ltd', 'GmbH', 'Inc', 'Group')[c % 5]}"
        domain = f"{name.lower().replace(' ', '')}{c}.example"
        vertical = rng.choice(tuple(VERTICAL_OWNERS))
        created = now - rng.randint(200, 400) * DAY
        company = store.create("companies", {"name": name, "domain": domain}, importer, at_ms=created)
        is_customer = rng.random() < 0.2
        ranks: list[tuple[int, int, str]] = []
        for p in range(per_company):
            status = "customer" if (is_customer and p == 0) else _pick(rng, _STATUS_WEIGHTS)
            cid, owner = _contact(
                store,
                rng,
                worker,
                importer,
                company.id,
                name,
                domain,
                vertical,
                status,
                created + rng.randint(1, 100) * DAY,
                c * per_company + p,
            )
            ranks.append((_RANK[status], cid, owner))
            if is_customer and p > 0:
                store.update("contacts", cid, {"lead_gen_suppressed": "true"}, worker, at_ms=now - DAY)
        rank, top_id, top_owner = max(ranks)
        account = {
            "account_status": next(s for s, r in _RANK.items() if r == rank),
            "hubspot_owner_id": top_owner,
        }
        if is_customer:
            account["poc_contact_id"] = str(top_id)
        store.update("companies", company.id, account, worker, at_ms=now - DAY)


def _contact(
    store: Store,
    rng: random.Random,
    worker: Actor,
    importer: Actor,
    company_id: int,
    company: str,
    domain: str,
    vertical: str,
    status: str,
    t0: int,
    index: int,
) -> tuple[int, str]:
    """One contact walked from prospect/new to `status` with the writes that got it there."""
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    score = rng.randint(0, 95) if status == "prospect" else rng.randint(100, 200)
    props = {
        "email": f"{first}.{last}.{index}@{domain}".lower(),
        "firstname": first,
        "lastname": last,
        "company": company,
        "vertical": vertical,
        "hubspotscore": str(score),
        "lifecyclestage": "lead",
    }
    contact = store.create("contacts", props, importer, associations=[(company_id, 1)], at_ms=t0)
    cid, t = contact.id, t0 + 60_000
    store.update(
        "contacts",
        cid,
        {
            "contact_status": "prospect",
            "contact_milestone": "new",
            "contact_status_changed_at": str(t),
            "contact_milestone_changed_at": str(t),
        },
        worker,
        at_ms=t,
    )
    owner = rng.choice(VERTICAL_OWNERS[vertical])
    milestone = _pick(rng, _MILESTONES[status])
    if status != "prospect":
        t += rng.randint(1, 20) * DAY
        store.update(
            "contacts",
            cid,
            {
                "contact_status": "mql",
                "contact_milestone": "assigned",
                "hubspot_owner_id": owner,
                "contact_status_changed_at": str(t),
                "contact_milestone_changed_at": str(t),
            },
            worker,
            at_ms=t,
        )
    if status in ("sql", "customer"):
        t += rng.randint(1, 15) * DAY
        store.update("contacts", cid, {"contact_milestone": "sales_qualified"}, _rep(owner), at_ms=t)
        store.update(
            "contacts",
            cid,
            {
                "contact_status": "sql",
                "contact_milestone": "working",
                "contact_status_changed_at": str(t + 1000),
            },
            worker,
            at_ms=t + 1000,
        )
        if rng.random() < 0.85 or status == "customer":
            store.update(
                "contacts",
                cid,
                {"gmv_forecast": str(rng.randrange(5_000, 250_000, 500))},
                _rep(owner),
                at_ms=t + 2000,
            )
    if status == "srl":
        t += rng.randint(1, 15) * DAY
        store.update(
            "contacts",
            cid,
            {
                "contact_milestone": milestone,
                "milestone_reason": rng.choice(_REASONS.get(milestone, ("other_nurture",))),
            },
            _rep(owner),
            at_ms=t,
        )
        store.update(
            "contacts",
            cid,
            {"contact_status": "srl", "contact_status_changed_at": str(t + 1000)},
            worker,
            at_ms=t + 1000,
        )
    else:
        if status == "customer":  # the rep converts, the worker moves status (lifecycle-spec T13)
            t += rng.randint(1, 10) * DAY
            store.update("contacts", cid, {"contact_milestone": "convert_to_customer"}, _rep(owner), at_ms=t)
            store.update(
                "contacts",
                cid,
                {
                    "contact_status": "customer",
                    "contact_milestone": "active",
                    "contact_status_changed_at": str(t + 1000),
                },
                worker,
                at_ms=t + 1000,
            )
        if milestone not in ("new", "active", "working", "assigned"):
            t += rng.randint(1, 10) * DAY
            automatic = milestone == "received_campaigns"
            store.update(
                "contacts",
                cid,
                {"contact_milestone": milestone, "contact_milestone_changed_at": str(t)},
                worker if automatic else _rep(owner),
                at_ms=t,
            )
    store.update("contacts", cid, {"lifecyclestage": _LIFECYCLE[status]}, worker, at_ms=t + 5000)
    if status in ("sql", "customer") and milestone != "dead":
        amount = store.get("contacts", cid)
        stage = {"contract_negotiations": "contractsent", "working": "qualifiedtobuy"}.get(
            milestone, "closedwon"
        )
        store.create(
            "deals",
            {
                "dealname": f"{company} - {first} {last}",
                "pipeline": "default",
                "dealstage": stage,
                "amount": (amount.properties.get("gmv_forecast", "") if amount else ""),
                "hubspot_owner_id": owner,
            },
            worker,
            associations=[(cid, 3), (company_id, 5)],
            at_ms=t + 6000,
        )
    return cid, owner if status != "prospect" else ""
