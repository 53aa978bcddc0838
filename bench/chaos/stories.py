"""What the scenarios do to each contact, and what the rules say its final state must be.

A `Story` is one contact's script: actions in phases (1: created by a rep, plus what HubSpot
and the email tool do to it; 2: a rep's action that needs phase 1 processed first; 3: a
rep's follow-up) and the `Expect`ed final state, written here from lifecycle-spec.md by
hand — never computed by `rules/` — so the chaos suite checks the rules' implementation
as well as the plumbing. A scenario settles the system between phases, so every
expectation is deterministic; the race stories of scenario 5 are the exception, and
their expectations name the set of outcomes the rules allow.

Phase-1 kinds: new, campaign, mql, bounce, optout. Phase-2 kinds (after 1 is processed):
sql, qualified, dead_rep, unqualified, in_review, reassign, status_edit, revive.
Phase-3 kinds: nurture, customer, negotiation.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from bench.chaos.system import ROOT

_CONFIG = yaml.safe_load((ROOT / "config.yaml").read_text())
VERTICALS: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in _CONFIG["routing"]["verticals"].items()}
DEFAULT_OWNERS: tuple[str, ...] = tuple(_CONFIG["routing"]["default_owners"])
ALL_OWNERS = frozenset(o for owners in VERTICALS.values() for o in owners) | frozenset(DEFAULT_OWNERS)
RANK = {s["value"]: n for n, s in enumerate(_CONFIG["statuses"], start=1)}
STAGE = _CONFIG["deals"]["stages"]  # working → appointmentscheduled, ...
REP_USERS = (1101, 1102, 1201, 1202, 1301, 1302)

PHASE1 = ("new", "campaign", "mql", "bounce", "optout")
PHASE2 = ("sql", "qualified", "dead_rep", "unqualified", "in_review", "reassign", "status_edit", "revive")
PHASE3 = ("nurture", "customer", "negotiation")
ALL_KINDS = PHASE1 + PHASE2 + PHASE3


def owners_of(vertical: str) -> frozenset[str]:
    return frozenset(VERTICALS.get(vertical) or DEFAULT_OWNERS)


@dataclass(frozen=True)
class Action:
    phase: int
    kind: str                 # create | hubspot | rep | email
    data: dict[str, Any]
    user: int = 0             # the rep (HubSpot user id) for create/rep


@dataclass
class Expect:
    status: frozenset[str]
    milestone: frozenset[str]
    reason: frozenset[str] | None = None          # None: not checked
    owner_in: frozenset[str] | None = frozenset()  # frozenset(): must have no owner; None: not checked
    deals: tuple[int, int] = (0, 0)
    deal_stages: frozenset[str] | None = None
    tasks: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind → (min, max); others (0, 0)
    unsub: tuple[int, int] = (0, 0)
    props: dict[str, str] = field(default_factory=dict)  # other properties that must hold these values
    earlier: tuple[tuple[str, str], ...] = ()     # states on the way: stuck there = an event was lost


@dataclass
class Story:
    kind: str
    n: int
    email: str
    vertical: str
    gmv: str | None
    company: int | None
    actions: list[Action]
    expect: Expect
    after: dict[int, tuple[str, str]] = field(default_factory=dict)  # state once phase p is processed
    cid: str | None = None

    def phases(self) -> set[int]:
        return {a.phase for a in self.actions}


def _e(status: str | Iterable[str], milestone: str | Iterable[str], **kw: Any) -> Expect:
    def fs(v: str | Iterable[str]) -> frozenset[str]:
        return frozenset([v]) if isinstance(v, str) else frozenset(v)
    return Expect(fs(status), fs(milestone), **kw)


def make_story(kind: str, n: int, rng: random.Random, run: str, company: int | None) -> Story:
    """One contact's script and expected final state (lifecycle-spec §3 rows in the comments)."""
    vertical = rng.choice(["marketplace", "retail", "wholesale", "marketplace", "retail", ""])
    gmv = rng.choice([None, "25000", "120000"])
    email = f"{kind.replace('_', '-')}-{n}-{run}@chaos{company if company is not None else 'x'}.example"
    rep = rng.choice(REP_USERS)
    props: dict[str, str] = {"email": email, "firstname": f"C{n}", "lastname": kind,
                             "hubspotscore": str(rng.randint(5, 60))}
    if vertical:
        props["vertical"] = vertical
    if gmv:
        props["gmv_forecast"] = gmv
    acts = [Action(1, "create", {"properties": props}, rep)]
    score = {"hubspotscore": str(rng.randint(100, 160))}
    own = owners_of(vertical)
    no_gmv = 0 if gmv else 1
    deal_w = dict(deals=(1, 1), deal_stages=frozenset([STAGE["working"]]))

    def a(phase: int, what: str, data: dict[str, Any]) -> None:
        acts.append(Action(phase, what, data, rep))

    if kind == "new":                                     # T1
        ex = _e("prospect", "new")
    elif kind == "campaign":                              # T1, T2 (DELIVERED of a marketing email)
        a(1, "email", {"type": "DELIVERED", "recipient": email, "emailCampaignId": 9001})
        ex = _e("prospect", "received_campaigns", earlier=(("prospect", "new"),))
    elif kind == "mql":                                   # T3: score ≥ 100 → mql/assigned, owner, task
        a(1, "hubspot", score)
        ex = _e("mql", "assigned", owner_in=own, tasks={"new_mql": (1, 1)}, earlier=(("prospect", "new"),))
    elif kind == "bounce":                                # T4: hard bounce → dead, status unchanged, no unsubscribe
        a(1, "email", {"type": "BOUNCE", "category": "HARD_BOUNCE", "recipient": email, "emailCampaignId": 9001})
        ex = _e("prospect", "dead", earlier=(("prospect", "new"),))
    elif kind == "optout":                                # T4: unsubscribe → dead
        a(1, "email", {"type": "STATUSCHANGE", "recipient": email, "subscriptions": [{"status": "UNSUBSCRIBED"}]})
        ex = _e("prospect", "dead", earlier=(("prospect", "new"),))
    elif kind == "sql":                                   # T3, then T6: sales_qualified on mql → sql/working, deal
        a(1, "hubspot", score)
        a(2, "rep", {"contact_milestone": "sales_qualified"})
        ex = _e("sql", "working", owner_in=own, tasks={"new_mql": (1, 1), "add_gmv_forecast": (no_gmv, no_gmv)},
                earlier=(("prospect", "new"), ("mql", "assigned"), ("mql", "sales_qualified")), **deal_w)
    elif kind == "qualified":                             # T6: qualified on prospect → sql/working, deal
        a(2, "rep", {"contact_milestone": "qualified"})
        ex = _e("sql", "working", tasks={"add_gmv_forecast": (no_gmv, no_gmv)},
                earlier=(("prospect", "new"), ("prospect", "qualified")), **deal_w)
    elif kind == "dead_rep":                              # T5: a rep sets dead → unsubscribe once
        was_mql = rng.random() < 0.5
        if was_mql:
            a(1, "hubspot", score)
        a(2, "rep", {"contact_milestone": "dead"})
        status = "mql" if was_mql else "prospect"
        ex = _e(status, "dead", owner_in=own if was_mql else frozenset(), unsub=(1, 1),
                tasks={"new_mql": (1, 1)} if was_mql else {},
                earlier=(("prospect", "new"), ("mql", "assigned")) if was_mql else (("prospect", "new"),))
    elif kind == "unqualified":                           # T7: unqualified + valid reason on prospect → srl
        a(2, "rep", {"contact_milestone": "unqualified", "milestone_reason": "never_a_good_fit"})
        ex = _e("srl", "unqualified", reason=frozenset(["never_a_good_fit"]),
                earlier=(("prospect", "new"), ("prospect", "unqualified")))
    elif kind == "in_review":                             # T10: stays mql
        a(1, "hubspot", score)
        a(2, "rep", {"contact_milestone": "in_review"})
        ex = _e("mql", "in_review", owner_in=own, tasks={"new_mql": (1, 1)},
                earlier=(("prospect", "new"), ("mql", "assigned")))
    elif kind == "reassign":                              # T11: next owner of the new vertical, back to assigned
        a(1, "hubspot", score)
        new_vertical = rng.choice([v for v in VERTICALS if v != vertical])
        a(2, "rep", {"contact_milestone": "reassign", "vertical": new_vertical})
        ex = _e("mql", "assigned", owner_in=owners_of(new_vertical), tasks={"new_mql": (2, 2)},
                props={"vertical": new_vertical}, earlier=(("prospect", "new"), ("mql", "reassign")))
    elif kind == "status_edit":                           # T16: a hand edit of the locked status is reverted
        a(1, "hubspot", score)
        a(2, "rep", {"contact_status": "customer"})
        ex = _e("mql", "assigned", owner_in=own, tasks={"new_mql": (1, 1), "reverted_status": (1, 1)},
                earlier=(("prospect", "new"),))
    elif kind == "revive":                                # T4 then T6: a rep may revive a dead contact by hand
        a(1, "email", {"type": "BOUNCE", "category": "HARD_BOUNCE", "recipient": email, "emailCampaignId": 9001})
        a(2, "rep", {"contact_milestone": "qualified"})
        ex = _e("sql", "working", tasks={"add_gmv_forecast": (no_gmv, no_gmv)},
                earlier=(("prospect", "new"), ("prospect", "dead"), ("prospect", "qualified")), **deal_w)
    elif kind == "nurture":                               # T8 (held, task), then T7 when the reason arrives
        a(1, "hubspot", score)
        a(2, "rep", {"contact_milestone": "return_to_nurture"})
        a(3, "rep", {"milestone_reason": "no_budget_now"})
        ex = _e("srl", "return_to_nurture", reason=frozenset(["no_budget_now"]), owner_in=own,
                tasks={"new_mql": (1, 1), "reason_required": (1, 1)},
                earlier=(("prospect", "new"), ("mql", "assigned"), ("mql", "return_to_nurture")))
    elif kind == "customer":                              # T6, then T13: customer/active, deal won, company POC
        a(2, "rep", {"contact_milestone": "qualified"})
        a(3, "rep", {"contact_milestone": "convert_to_customer"})
        ex = _e("customer", "active", tasks={"add_gmv_forecast": (no_gmv, no_gmv)}, deals=(1, 1),
                deal_stages=frozenset([STAGE["convert_to_customer"]]),
                earlier=(("prospect", "new"), ("sql", "working"), ("sql", "convert_to_customer")))
    elif kind == "negotiation":                           # T6, then T12: deal to the negotiation stage
        a(2, "rep", {"contact_milestone": "qualified"})
        a(3, "rep", {"contact_milestone": "contract_negotiations"})
        ex = _e("sql", "contract_negotiations", tasks={"add_gmv_forecast": (no_gmv, no_gmv)}, deals=(1, 1),
                deal_stages=frozenset([STAGE["contract_negotiations"]]),
                earlier=(("prospect", "new"), ("sql", "working")))
    else:
        raise ValueError(f"unknown story kind {kind!r}")
    after = dict(_AFTER.get(kind, {}))
    if kind == "dead_rep":
        after[1] = _MQL if "mql" in ex.status else _NEW
    return Story(kind, n, email, vertical, gmv, company, acts, ex, after)


_NEW, _MQL = ("prospect", "new"), ("mql", "assigned")
# The state a story's contact is in once phase 1 (and 2) is processed: the soak, which cannot
# settle the whole system between phases, waits for it before acting out the next phase.
_AFTER: dict[str, dict[int, tuple[str, str]]] = {
    "sql": {1: _MQL}, "qualified": {1: _NEW}, "unqualified": {1: _NEW}, "in_review": {1: _MQL},
    "reassign": {1: _MQL}, "status_edit": {1: _MQL}, "revive": {1: ("prospect", "dead")},
    "nurture": {1: _MQL, 2: ("mql", "return_to_nurture")}, "customer": {1: _NEW, 2: ("sql", "working")},
    "negotiation": {1: _NEW, 2: ("sql", "working")},
}


def population(count: int, rng: random.Random, run: str, *, kinds: Iterable[str] = ALL_KINDS,
               per_company: int = 4, start: int = 0) -> list[Story]:
    """`count` stories cycling through `kinds` (shuffled), `per_company` contacts per company,
    at most one customer per company (a second one becomes a negotiation)."""
    kinds = list(kinds)
    order = [kinds[i % len(kinds)] for i in range(count)]
    rng.shuffle(order)
    stories: list[Story] = []
    has_customer: set[int] = set()
    for i, kind in enumerate(order):
        n = start + i
        company = n // per_company if per_company else None
        if kind == "customer" and company is not None:
            if company in has_customer:
                kind = "negotiation"
            has_customer.add(company)
        stories.append(make_story(kind, n, rng, run, company))
    return stories


def expected_companies(stories: Iterable[Story]) -> dict[int, dict[str, Any]]:
    """Spec §6: account_status = the highest status of the company's contacts; the customer
    contact is its POC; the other contacts of a customer account are lead-gen suppressed."""
    by_company: dict[int, list[Story]] = {}
    for s in stories:
        if s.company is not None:
            by_company.setdefault(s.company, []).append(s)
    out: dict[int, dict[str, Any]] = {}
    for company, members in by_company.items():
        best: set[str] = {""}
        for s in members:  # every combination of the allowed statuses (small sets)
            best = {max((b, st), key=lambda x: RANK.get(x, 0)) for b in best for st in s.expect.status}
        pocs = [s for s in members if s.expect.status == frozenset(["customer"])]
        out[company] = {"account_status": frozenset(best), "poc": pocs[0] if pocs else None, "members": members}
    return out


# -- scenario 5: races between reps and the worker ---------------------------------------------------
RACE_KINDS = ("race_dead_vs_score", "race_flipflop", "race_reason", "race_create_qualified", "race_props",
              "race_status_edit")


def make_race(kind: str, n: int, rng: random.Random, run: str, company: int | None) -> Story:
    """Phase 1 sets the stage (settled); phase 2 is the race, acted out concurrently with small
    gaps while the workers write the same contacts. The expectation is what the rules say for
    the rep's last action, whatever the worker managed to see in between."""
    vertical = rng.choice(["marketplace", "retail", "wholesale"])
    email = f"{kind.replace('_', '-')}-{n}-{run}@chaos{company if company is not None else 'x'}.example"
    rep = rng.choice(REP_USERS)
    props = {"email": email, "firstname": f"R{n}", "lastname": kind, "hubspotscore": str(rng.randint(5, 60)),
             "vertical": vertical}
    create = {"properties": props}
    score = {"hubspotscore": str(rng.randint(100, 160))}
    own = owners_of(vertical)
    acts: list[Action] = []

    def a(phase: int, what: str, data: dict[str, Any], user: int = rep) -> None:
        acts.append(Action(phase, what, data, user))

    if kind == "race_dead_vs_score":      # the score makes the worker write mql/assigned; the rep sets dead
        a(1, "create", create)
        a(2, "hubspot", score)
        a(2, "rep", {"contact_milestone": "dead"})
        ex = _e(["prospect", "mql"], "dead", owner_in=None, unsub=(1, 1), tasks={"new_mql": (0, 1)},
                earlier=(("prospect", "new"), ("mql", "assigned")))
    elif kind == "race_flipflop":         # reassign / in_review in quick succession; the last is in_review
        a(1, "create", create)
        a(1, "hubspot", score)
        steps = rng.randint(2, 4)
        reassigns = 0
        for i in range(steps):
            if i % 2 == steps % 2:
                reassigns += 1
                a(2, "rep", {"contact_milestone": "reassign",
                             "vertical": rng.choice([v for v in VERTICALS if v != vertical])})
            else:
                a(2, "rep", {"contact_milestone": "in_review"})
        ex = _e("mql", "in_review", owner_in=ALL_OWNERS - frozenset(DEFAULT_OWNERS),
                tasks={"new_mql": (1, 1 + reassigns)}, earlier=(("mql", "assigned"), ("mql", "reassign")))
    elif kind == "race_reason":           # return_to_nurture without a reason, the reason right after
        a(1, "create", create)
        a(1, "hubspot", score)
        a(2, "rep", {"contact_milestone": "return_to_nurture"})
        a(2, "rep", {"milestone_reason": "no_budget_now"})
        ex = _e("srl", "return_to_nurture", reason=frozenset(["no_budget_now"]), owner_in=own,
                tasks={"new_mql": (1, 1), "reason_required": (0, 1)},
                earlier=(("mql", "assigned"), ("mql", "return_to_nurture")))
    elif kind == "race_create_qualified":  # a rep creates a contact and qualifies it at once (T1 vs T6)
        a(2, "create", create)
        a(2, "rep", {"contact_milestone": "qualified"})
        ex = _e("sql", "working", tasks={"add_gmv_forecast": (1, 1)}, deals=(1, 1),
                deal_stages=frozenset([STAGE["working"]]), earlier=(("prospect", "new"), ("prospect", "qualified")))
    elif kind == "race_props":            # the worker writes status/owner while a rep edits other properties
        a(1, "create", create)
        a(2, "hubspot", score)
        last: dict[str, str] = {}
        for i in range(3):
            edit = rng.choice([{"firstname": f"R{n}v{i}"}, {"gmv_forecast": str(1000 * (i + 1) + n)}])
            last.update(edit)
            a(2, "rep", edit)
        ex = _e("mql", "assigned", owner_in=own, tasks={"new_mql": (1, 1)}, props=last,
                earlier=(("prospect", "new"),))
    elif kind == "race_status_edit":      # a hand edit of the locked status while the score changes
        a(1, "create", create)
        a(1, "hubspot", score)
        a(2, "rep", {"contact_status": "customer"})
        a(2, "hubspot", {"hubspotscore": str(rng.randint(161, 200))})
        ex = _e("mql", "assigned", owner_in=own, tasks={"new_mql": (1, 1), "reverted_status": (1, 1)})
    else:
        raise ValueError(kind)
    return Story(kind, n, email, vertical, None, company, acts, ex)


def race_population(count: int, rng: random.Random, run: str, per_company: int = 4,
                    kinds: Iterable[str] = RACE_KINDS) -> list[Story]:
    kinds = list(kinds)
    order = [kinds[i % len(kinds)] for i in range(count)]
    rng.shuffle(order)
    return [make_race(kind, i, rng, run, i // per_company if per_company else None) for i, kind in enumerate(order)]
