"""Every row of lifecycle-spec §3 (T1-T17) with its negative case, one table per behaviour.

Contacts and events are HubSpot-shaped JSON (tests/factories.py); the policy is the real
config.yaml. NOW is when the worker evaluates, T0 when a person made the change.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.model import Contact, Decision
from tests.factories import (
    APP_ID,
    NOW,
    T0,
    created_event,
    entry,
    final_pair,
    make_contact,
    make_email_event,
    make_event,
    policy,
    prop_event,
    run,
    tasks,
    types,
)

S = str(NOW)
OLD = str(T0 - 100_000)  # a milestone stamp older than the person's change
ROLLUP = "rollup_companies"


def to(status: str | None = None, milestone: str | None = None) -> dict[str, str]:
    """The updates of a move made by the worker (stamped with now)."""
    out = {}
    if status:
        out |= {"contact_status": status, "contact_status_changed_at": S}
    if milestone:
        out |= {"contact_milestone": milestone, "contact_milestone_changed_at": S}
    return out


def stamped(at: int = T0) -> dict[str, str]:
    """The update that stamps a person's milestone change with its own time."""
    return {"contact_milestone_changed_at": str(at)}


def ms(value: str | None, at: int = T0, **kw: Any) -> dict[str, Any]:
    """A person (or, with echo=True, this app) setting the milestone."""
    return prop_event("contact_milestone", value, at=at, **kw)


def c(status: str | None, milestone: str | None, **props: Any) -> Contact:
    return make_contact(contact_status=status, contact_milestone=milestone, **props)


NOOP: dict[str, Any] = {"updates": {}, "actions": []}


def check(
    d: Decision,
    *,
    updates: dict[str, str] | None = None,
    actions: list[str] | None = None,
    rows: tuple[str, ...] | None = None,
    task_kinds: list[str] | None = None,
    reason: str | None = None,
    needs_history: bool = False,
) -> None:
    assert d.needs_history is needs_history, d.reason
    if updates is not None:
        assert dict(d.updates) == updates, d.reason
    if actions is not None:
        assert types(d) == actions, d.reason
    if rows is not None:
        assert d.rows == rows, d.reason
    if task_kinds is not None:
        assert tasks(d) == task_kinds
    if reason is not None:
        assert reason in d.reason
    assert d.reason.endswith(".") and "\n" not in d.reason


# -- T1: created ----------------------------------------------------------------------------------
T1 = [
    pytest.param(
        make_contact(email="a@example.com"),
        [created_event()],
        {"updates": to("prospect", "new"), "actions": [ROLLUP], "rows": ("T1",)},
        id="T1-created",
    ),
    pytest.param(make_contact(), [], {"updates": to("prospect", "new"), "rows": ("T1",)}, id="T1-reconcile-no-status"),
    pytest.param(c("prospect", "new"), [created_event()], NOOP, id="T1-neg-has-status"),
    pytest.param(
        make_contact(),
        [created_event(changeSource="INTEGRATION", sourceId=APP_ID)],
        {**NOOP, "reason": "echo"},
        id="T1-neg-echo",
    ),
]


@pytest.mark.parametrize(("contact", "events", "expect"), T1)
def test_t1_contact_created(contact: Contact, events: list[dict[str, Any]], expect: dict[str, Any]) -> None:
    check(run(contact, *events), **expect)


# -- T2: lead-generation campaign or sequence -----------------------------------------------------
T2 = [
    pytest.param(
        c("prospect", "new"),
        [make_email_event("DELIVERED")],
        {"updates": to(milestone="received_campaigns"), "actions": [], "rows": ("T2",)},
        id="T2-delivered",
    ),
    pytest.param(
        c("prospect", "new"),
        [prop_event("hs_sequences_is_enrolled", "true")],
        {"updates": to(milestone="received_campaigns"), "rows": ("T2",)},
        id="T2-sequence",
    ),
    pytest.param(
        c("prospect", "new"),
        [prop_event("hs_email_delivered", "1")],
        {"updates": to(milestone="received_campaigns"), "rows": ("T2",)},
        id="T2-delivered-count",
    ),
    pytest.param(
        c("prospect", "new"),
        [prop_event("hs_email_last_send_date", "2025-12-03T14:00:00Z")],
        {"updates": to(milestone="received_campaigns"), "rows": ("T2",)},
        id="T2-last-send-date",
    ),
    pytest.param(
        c("prospect", "new", hs_sequences_is_enrolled="true"),
        [],
        {"updates": to(milestone="received_campaigns"), "rows": ("T2",)},
        id="T2-state-sequence",
    ),
    pytest.param(c("prospect", "received_campaigns"), [make_email_event("DELIVERED")], NOOP, id="T2-neg-already"),
    pytest.param(
        c("mql", "assigned"),
        [make_email_event("DELIVERED")],
        {**NOOP, "reason": "T2 applies only to prospect/new"},
        id="T2-neg-mql",
    ),
    pytest.param(c("prospect", "new"), [prop_event("hs_sequences_is_enrolled", "false")], NOOP, id="T2-neg-unenrolled"),
    pytest.param(c("prospect", "new"), [prop_event("hs_email_delivered", "0")], NOOP, id="T2-neg-zero-count"),
    pytest.param(c("prospect", "new"), [make_email_event("OPEN")], NOOP, id="T2-neg-open"),
    pytest.param(
        make_contact(
            contact_status="prospect",
            contact_milestone="new",
            contact_milestone_changed_at=str(T0),
            history={"contact_milestone": [entry("new", T0)]},
        ),
        [make_email_event("DELIVERED", created=T0 - 5_000)],
        {**NOOP, "reason": "stale"},
        id="T2-neg-stale",
    ),
]


@pytest.mark.parametrize(("contact", "events", "expect"), T2)
def test_t2_campaign_received(contact: Contact, events: list[dict[str, Any]], expect: dict[str, Any]) -> None:
    check(run(contact, *events), **expect)


# -- T3: lead score -------------------------------------------------------------------------------
T3 = [
    pytest.param(
        c("prospect", "new", hubspotscore="100", vertical="retail"),
        [prop_event("hubspotscore", "100")],
        {
            "updates": to("mql", "assigned"),
            "actions": ["assign_owner", "create_task", ROLLUP],
            "rows": ("T3",),
            "task_kinds": ["new_mql"],
        },
        id="T3-score-100",
    ),
    pytest.param(
        c("prospect", "received_campaigns", hubspotscore="150"),
        [prop_event("hubspotscore", "150")],
        {"updates": to("mql", "assigned"), "rows": ("T3",)},
        id="T3-score-150-received",
    ),
    pytest.param(
        c("prospect", "new", hubspotscore="100.0"),
        [],
        {"updates": to("mql", "assigned")},
        id="T3-reconcile-decimal",
    ),
    pytest.param(
        c("prospect", "new", hubspotscore="99"),
        [prop_event("hubspotscore", "99")],
        {**NOOP, "reason": "score 99 is below the threshold 100", "rows": ()},
        id="T3-neg-99",
    ),
    pytest.param(
        c("prospect", "dead", hubspotscore="100"),
        [prop_event("hubspotscore", "100")],
        {**NOOP, "rows": ("T17",), "reason": "dead is sticky"},
        id="T3-neg-dead-T17",
    ),
    pytest.param(
        c("mql", "assigned", hubspotscore="100"),
        [prop_event("hubspotscore", "100")],
        {**NOOP, "reason": "T3 moves only prospect"},
        id="T3-neg-already-mql",
    ),
    pytest.param(c("sql", "working", hubspotscore="500"), [prop_event("hubspotscore", "500")], NOOP, id="T3-neg-sql"),
    pytest.param(
        c("prospect", "new", hubspotscore="lots"),
        [prop_event("hubspotscore", "lots")],
        {**NOOP, "reason": "not a number"},
        id="T3-neg-not-a-number",
    ),
    pytest.param(c("prospect", "new"), [], NOOP, id="T3-neg-no-score"),
]


@pytest.mark.parametrize(("contact", "events", "expect"), T3)
def test_t3_lead_score(contact: Contact, events: list[dict[str, Any]], expect: dict[str, Any]) -> None:
    check(run(contact, *events), **expect)


def test_t3_assigns_an_owner_of_the_vertical_once() -> None:
    d = run(c("prospect", "new", hubspotscore="120", vertical="retail"), prop_event("hubspotscore", "120"))
    assign, task = d.actions[0], d.actions[1]
    assert dict(assign.params) == {"mode": "if_unowned", "vertical": "retail"}
    assert assign.key == "assign_owner:51:once" and task.key == "new_mql:51:once"
    assert task.params["subject"] == "New MQL: acknowledge" and task.params["due_in_hours"] == "24"


# -- T4: email health -----------------------------------------------------------------------------
# A milestone the worker set (assigned): without history, the stamp proves a fact fresh.
MQL = {"contact_status": "mql", "contact_milestone": "assigned", "contact_milestone_changed_at": OLD}
DEAD = {"updates": to(milestone="dead"), "actions": [], "rows": ("T4",)}
T4 = [
    pytest.param(MQL, make_email_event("BOUNCE"), DEAD, id="T4-hard-bounce"),
    pytest.param(MQL, make_email_event("BOUNCE", category="UNKNOWN_USER"), DEAD, id="T4-unknown-user"),
    pytest.param(MQL, make_email_event("BOUNCE", category="MAILBOX_FULL"), NOOP, id="T4-neg-soft-bounce"),
    pytest.param(
        MQL,
        make_email_event("STATUSCHANGE", subscriptions=[{"id": 1, "status": "UNSUBSCRIBED"}]),
        DEAD,
        id="T4-unsubscribe-subscriptions",
    ),
    pytest.param(MQL, make_email_event("STATUSCHANGE", unsubscribed=True), DEAD, id="T4-unsubscribe-flag"),
    pytest.param(
        MQL,
        make_email_event("STATUSCHANGE", portalSubscriptionStatus="UNSUBSCRIBED"),
        DEAD,
        id="T4-unsubscribe-portal",
    ),
    pytest.param(
        MQL,
        make_email_event("STATUSCHANGE", subscriptions=[{"status": "SUBSCRIBED"}]),
        NOOP,
        id="T4-neg-subscribe",
    ),
    pytest.param(MQL, make_email_event("SPAMREPORT"), DEAD, id="T4-spam-report"),
    pytest.param(MQL, prop_event("hs_email_hard_bounce_reason_enum", "UNKNOWN_USER"), DEAD, id="T4-bounce-reason"),
    pytest.param(MQL, prop_event("hs_email_bad_address", "true"), DEAD, id="T4-bad-address"),
    pytest.param(MQL, prop_event("hs_email_optout", "true"), DEAD, id="T4-optout"),
    pytest.param(MQL, prop_event("hs_email_quarantined", "true"), DEAD, id="T4-quarantined"),
    pytest.param(MQL, prop_event("hs_email_optout", "false"), NOOP, id="T4-neg-optin"),
    pytest.param(
        {**MQL, "hs_email_optout": "false"},
        prop_event("hs_email_optout", "true"),
        NOOP,
        id="T4-neg-superseded-by-state",
    ),
    pytest.param(
        {**MQL, "contact_milestone": "dead"},
        make_email_event("BOUNCE"),
        {**NOOP, "reason": "already dead"},
        id="T4-neg-already-dead",
    ),
    pytest.param(
        {"contact_status": "prospect", "contact_milestone": "new"},
        make_email_event("BOUNCE"),
        DEAD,
        id="T4-prospect",
    ),
    pytest.param(
        {"contact_status": "customer", "contact_milestone": "active"},
        make_email_event("SPAMREPORT"),
        DEAD,
        id="T4-customer",
    ),
]


@pytest.mark.parametrize(("props", "event", "expect"), T4)
def test_t4_email_health_makes_the_milestone_dead(
    props: dict[str, str], event: dict[str, Any], expect: dict[str, Any]
) -> None:
    d = run(make_contact(**props), event)
    check(d, **expect)
    assert "contact_status" not in d.updates  # status unchanged


# -- T4: stale events never undo newer state ------------------------------------------------------
REVIVED = {"contact_milestone": [entry("in_review", T0), entry("dead", T0 - 1_000, by="app")]}
WORKER_MADE = {"contact_milestone": [entry("received_campaigns", T0, by="app"), entry("new", T0 - 9_000, by="app")]}
STALE = [
    pytest.param(
        make_contact(
            contact_status="mql",
            contact_milestone="in_review",
            contact_milestone_changed_at=str(T0),
            history=REVIVED,
        ),
        [make_email_event("BOUNCE", created=T0 - 2_000)],
        {**NOOP, "reason": "stale"},
        id="stale-bounce-after-revival-ignored",
    ),
    pytest.param(
        make_contact(
            contact_status="mql",
            contact_milestone="in_review",
            contact_milestone_changed_at=str(T0),
            history=REVIVED,
        ),
        [make_email_event("BOUNCE", created=T0 + 2_000)],
        DEAD,
        id="fresh-bounce-applies",
    ),
    pytest.param(
        c("mql", "in_review", contact_milestone_changed_at=OLD),
        [ms("in_review", at=T0), make_email_event("BOUNCE", created=T0 - 1_000)],
        {"updates": stamped(T0), "rows": ("T10",)},
        id="stale-by-a-change-in-the-same-batch",
    ),
    pytest.param(
        c("mql", "in_review", contact_milestone_changed_at=OLD),
        [make_email_event("BOUNCE", created=T0 - 1_000), ms("in_review", at=T0)],
        {"updates": stamped(T0), "rows": ("T10",)},
        id="stale-in-any-arrival-order",
    ),
    pytest.param(
        make_contact(
            contact_status="prospect",
            contact_milestone="received_campaigns",
            contact_milestone_changed_at=str(T0),
            history=WORKER_MADE,
        ),
        [make_email_event("BOUNCE", created=T0 - 1_000)],
        DEAD,
        id="worker-change-does-not-make-stale",
    ),
    pytest.param(
        c("mql", "in_review", contact_milestone_changed_at=str(T0)),
        [make_email_event("BOUNCE", created=T0 - 1_000)],
        {**NOOP, "needs_history": True, "rows": ("T4",)},
        id="stamp-newer-without-history",
    ),
    pytest.param(
        c("mql", "assigned", contact_milestone_changed_at="2025-12-03T13:53:00Z"),
        [make_email_event("BOUNCE", created=T0)],
        DEAD,
        id="stamp-older-iso-is-fresh",
    ),
    pytest.param(  # a rep's milestone may be newer than the stamp (not processed yet): ask history
        c("mql", "in_review", contact_milestone_changed_at="2025-12-03T13:53:00Z"),
        [make_email_event("BOUNCE", created=T0)],
        {**NOOP, "needs_history": True, "rows": ("T4",)},
        id="rep-milestone-with-older-stamp-needs-history",
    ),
    pytest.param(
        make_contact(
            contact_status="mql",
            contact_milestone="in_review",
            hs_email_optout="true",
            history={
                "hs_email_optout": [entry("true", T0)],
                "contact_milestone": [entry("in_review", T0 - 5_000)],
            },
        ),
        [],
        DEAD,
        id="state-health-newer-than-person",
    ),
    pytest.param(
        make_contact(
            contact_status="mql",
            contact_milestone="in_review",
            hs_email_optout="true",
            contact_milestone_changed_at=str(T0),
            history={
                "hs_email_optout": [entry("true", T0 - 5_000)],
                "contact_milestone": [entry("in_review", T0)],
            },
        ),
        [],
        {**NOOP, "reason": "stale"},
        id="state-health-older-than-person",
    ),
    pytest.param(c("mql", "in_review", hs_email_optout="true"), [], NOOP, id="state-health-without-history"),
]


@pytest.mark.parametrize(("contact", "events", "expect"), STALE)
def test_stale_event_rule(contact: Contact, events: list[dict[str, Any]], expect: dict[str, Any]) -> None:
    check(run(contact, *events), **expect)


# -- T5: a rep sets dead --------------------------------------------------------------------------
T5 = [
    pytest.param(
        c("mql", "dead", contact_milestone_changed_at=OLD),
        [ms("dead")],
        {"updates": stamped(), "actions": ["unsubscribe_all"], "rows": ("T5",)},
        id="T5-rep-dead",
    ),
    pytest.param(
        c("sql", "dead", contact_milestone_changed_at=OLD, hs_email_optout="true"),
        [ms("dead")],
        {"updates": stamped(), "actions": [], "rows": ("T5",), "reason": "already true"},
        id="T5-already-opted-out",
    ),
    pytest.param(
        make_contact(
            contact_status="prospect",
            contact_milestone="dead",
            contact_milestone_changed_at=OLD,
            history={"contact_milestone": [entry("dead", T0), entry("new", T0 - 200_000, by="app")]},
        ),
        [],
        {"updates": stamped(), "actions": ["unsubscribe_all"], "rows": ("T5",)},
        id="T5-from-history",
    ),
    pytest.param(
        c("mql", "dead", contact_milestone_changed_at=OLD),
        [ms("dead", echo=True)],
        {**NOOP, "reason": "echo"},
        id="T5-neg-echo-of-automatic-dead",
    ),
    pytest.param(
        c("mql", "dead", contact_milestone_changed_at=str(T0)),
        [ms("dead")],
        NOOP,
        id="T5-neg-redelivered-after-stamp",
    ),
    pytest.param(
        make_contact(
            contact_status="mql",
            contact_milestone="dead",
            contact_milestone_changed_at=OLD,
            history={"contact_milestone": [entry("dead", T0, by="app")]},
        ),
        [],
        NOOP,
        id="T5-neg-automatic-dead",
    ),
]


@pytest.mark.parametrize(("contact", "events", "expect"), T5)
def test_t5_rep_sets_dead(contact: Contact, events: list[dict[str, Any]], expect: dict[str, Any]) -> None:
    check(run(contact, *events), **expect)


def test_t5_unsubscribe_key_is_the_change_time() -> None:
    d = run(c("mql", "dead", contact_milestone_changed_at=OLD), ms("dead"))
    assert d.actions[0].key == f"unsubscribe_all:51:{T0}"


# -- T6: sales qualified --------------------------------------------------------------------------
T6 = [
    pytest.param(
        c("prospect", "qualified"),
        [ms("qualified")],
        {
            "updates": to("sql", "working"),
            "actions": ["create_deal", "create_task", ROLLUP],
            "task_kinds": ["add_gmv_forecast"],
            "rows": ("T6",),
        },
        id="T6-prospect-qualified-no-gmv",
    ),
    pytest.param(
        c("mql", "sales_qualified", gmv_forecast="5000"),
        [ms("sales_qualified")],
        {"updates": to("sql", "working"), "actions": ["create_deal", ROLLUP], "rows": ("T6",)},
        id="T6-mql-sales-qualified",
    ),
    pytest.param(
        c("srl", "sales_qualified", gmv_forecast="10"),
        [ms("sales_qualified")],
        {"updates": to("sql", "working"), "rows": ("T6",)},
        id="T6-srl-sales-qualified",
    ),
    pytest.param(
        c("prospect", "qualified", gmv_forecast="10"),
        [],
        {"updates": to("sql", "working")},
        id="T6-unstable-applies-on-reconcile",
    ),
    pytest.param(c("prospect", "dead"), [ms("qualified", at=T0 - 5)], NOOP, id="T6-neg-stale-trigger"),
    pytest.param(c("sql", "working"), [], NOOP, id="T6-neg-already-sql"),
]


@pytest.mark.parametrize(("contact", "events", "expect"), T6)
def test_t6_sales_qualified(contact: Contact, events: list[dict[str, Any]], expect: dict[str, Any]) -> None:
    check(run(contact, *events), **expect)


def test_t6_deal_is_created_once_per_contact() -> None:
    d = run(c("mql", "sales_qualified", gmv_forecast="5000"), ms("sales_qualified"))
    assert d.actions[0].key == "create_deal:51:once" and dict(d.actions[0].params) == {"milestone": "working"}


# -- T7 / T8: reasons (spec §4) -------------------------------------------------------------------
HELD = {"updates": stamped(), "actions": ["create_task"], "task_kinds": ["reason_required"], "rows": ("T8",)}
T7_T8 = [
    pytest.param(
        c("prospect", "unqualified", milestone_reason="never_a_good_fit"),
        [ms("unqualified")],
        {"updates": {**to("srl"), **stamped()}, "actions": [ROLLUP], "rows": ("T7",)},
        id="T7-prospect-unqualified",
    ),
    pytest.param(
        c("mql", "unqualified", milestone_reason="do_not_call"),
        [ms("unqualified")],
        {"updates": {**to("srl"), **stamped()}, "rows": ("T7",)},
        id="T7-mql-unqualified",
    ),
    pytest.param(
        c("mql", "return_to_nurture", milestone_reason="unable_to_contact"),
        [ms("return_to_nurture")],
        {"updates": {**to("srl"), **stamped()}, "rows": ("T7",)},
        id="T7-mql-return-to-nurture",
    ),
    pytest.param(
        c("sql", "return_to_nurture", milestone_reason="no_budget_now"),
        [ms("return_to_nurture")],
        {"updates": {**to("srl"), **stamped()}, "rows": ("T7",)},
        id="T7-sql-return-to-nurture",
    ),
    pytest.param(c("sql", "return_to_nurture"), [ms("return_to_nurture")], HELD, id="T8-sql-no-reason"),
    pytest.param(c("prospect", "unqualified"), [ms("unqualified")], HELD, id="T8-prospect-no-reason"),
    pytest.param(
        c("mql", "return_to_nurture", milestone_reason="do_not_call"),
        [ms("return_to_nurture")],
        {**HELD, "reason": "do_not_call is not a return_to_nurture reason"},
        id="T8-reason-of-other-kind",
    ),
    pytest.param(
        c("mql", "unqualified", milestone_reason="not_a_good_fit_now"),
        [ms("unqualified")],
        HELD,
        id="T8-nurture-reason-for-unqualified",
    ),
    pytest.param(
        c("mql", "unqualified", milestone_reason="made_up"), [ms("unqualified")], HELD, id="T8-unknown-reason"
    ),
    pytest.param(
        c(
            "mql",
            "return_to_nurture",
            milestone_reason="unable_to_contact",
            contact_milestone_changed_at=str(T0),
        ),
        [prop_event("milestone_reason", "unable_to_contact", at=T0 + 60_000)],
        {"updates": to("srl"), "rows": ("T7",)},
        id="T7-reason-arrives-later",
    ),
]


@pytest.mark.parametrize(("contact", "events", "expect"), T7_T8)
def test_t7_t8_reason_required(contact: Contact, events: list[dict[str, Any]], expect: dict[str, Any]) -> None:
    d = run(contact, *events)
    check(d, **expect)
    if d.rows == ("T8",):
        assert "contact_status" not in d.updates and "contact_milestone" not in d.updates


def test_t8_task_is_the_same_on_redelivery_and_later_evaluations() -> None:
    first = run(c("sql", "return_to_nurture", contact_milestone_changed_at=OLD), ms("return_to_nurture"))
    after_stamp = c("sql", "return_to_nurture", contact_milestone_changed_at=str(T0))
    assert first.actions[0].key == f"reason_required:51:{T0}"
    assert first.actions[0].params["subject"] == "Reason required: Return to Nurture"
    assert run(after_stamp, ms("return_to_nurture")).actions[0].key == first.actions[0].key
    later = make_contact(contact_status="sql", contact_milestone="return_to_nurture",
                         contact_milestone_changed_at=str(T0),
                         history={"contact_milestone": [entry("return_to_nurture", T0)]})
    assert run(later, prop_event("hubspotscore", "12")).actions[0].key == first.actions[0].key
    # without its event or history, the stamp might still be an older change's (chaos Finding 4)
    assert run(after_stamp, prop_event("hubspotscore", "12")).needs_history


# -- T9: srl switches between return_to_nurture and unqualified -----------------------------------
T9 = [
    pytest.param(
        c("srl", "unqualified", milestone_reason="do_not_call", contact_milestone_changed_at=OLD),
        [ms("unqualified")],
        {"updates": stamped(), "actions": [], "rows": ("T9",)},
        id="T9-to-unqualified",
    ),
    pytest.param(
        c("srl", "return_to_nurture", milestone_reason="other_nurture", contact_milestone_changed_at=OLD),
        [ms("return_to_nurture")],
        {"updates": stamped(), "rows": ("T9",)},
        id="T9-to-return-to-nurture",
    ),
    pytest.param(
        c("srl", "unqualified", milestone_reason="unable_to_contact", contact_milestone_changed_at=OLD),
        [ms("unqualified")],
        {"updates": stamped(), "task_kinds": ["reason_required"], "rows": ("T9",)},
        id="T9-invalid-reason-held",
    ),
    pytest.param(
        c("srl", "unqualified", milestone_reason="do_not_call", contact_milestone_changed_at=str(T0)),
        [],
        NOOP,
        id="T9-neg-not-fresh",
    ),
]


@pytest.mark.parametrize(("contact", "events", "expect"), T9)
def test_t9_srl_switch(contact: Contact, events: list[dict[str, Any]], expect: dict[str, Any]) -> None:
    d = run(contact, *events)
    check(d, **expect)
    assert "contact_status" not in d.updates


# -- T10-T14: rows that stay, reassign, convert ---------------------------------------------------
STAYS = [
    pytest.param(
        c("mql", "in_review", contact_milestone_changed_at=OLD),
        [ms("in_review")],
        {"updates": stamped(), "actions": [], "rows": ("T10",)},
        id="T10-acknowledged",
    ),
    pytest.param(
        make_contact(
            contact_status="mql",
            contact_milestone="in_review",
            contact_milestone_changed_at=OLD,
            history={"contact_milestone": [entry("in_review", T0)]},
        ),
        [],
        {"updates": stamped(), "rows": ("T10",)},
        id="T10-from-history",
    ),
    pytest.param(
        c("mql", "in_review", contact_milestone_changed_at=str(T0)),
        [ms("in_review")],
        NOOP,
        id="T10-neg-redelivered",
    ),
    pytest.param(
        c("sql", "contract_negotiations", contact_milestone_changed_at=OLD),
        [ms("contract_negotiations")],
        {"updates": stamped(), "actions": ["update_deal_stage"], "rows": ("T12",)},
        id="T12-deal-stage",
    ),
    pytest.param(
        c("sql", "contract_negotiations", contact_milestone_changed_at=str(T0)),
        [],
        NOOP,
        id="T12-neg-not-fresh",
    ),
    pytest.param(
        c("customer", "inactive", contact_milestone_changed_at=OLD),
        [ms("inactive")],
        {"updates": stamped(), "actions": [], "rows": ("T14",)},
        id="T14-inactive",
    ),
    pytest.param(
        c("customer", "out_of_business", contact_milestone_changed_at=OLD),
        [ms("out_of_business")],
        {"updates": stamped(), "rows": ("T14",)},
        id="T14-out-of-business",
    ),
    pytest.param(c("customer", "inactive", contact_milestone_changed_at=str(T0)), [], NOOP, id="T14-neg-not-fresh"),
    pytest.param(
        c("mql", "assigned", contact_milestone_changed_at=OLD),
        [ms("assigned")],
        {"updates": stamped(), "rows": ()},
        id="no-row-person-change-is-stamped",
    ),
]


@pytest.mark.parametrize(("contact", "events", "expect"), STAYS)
def test_rows_that_stay(contact: Contact, events: list[dict[str, Any]], expect: dict[str, Any]) -> None:
    d = run(contact, *events)
    check(d, **expect)
    assert "contact_status" not in d.updates and "contact_milestone" not in d.updates


def test_t12_moves_the_deal_to_the_configured_stage() -> None:
    d = run(c("sql", "contract_negotiations", contact_milestone_changed_at=OLD), ms("contract_negotiations"))
    assert dict(d.actions[0].params) == {"stage": "contractsent", "milestone": "contract_negotiations"}
    assert d.actions[0].key == f"update_deal_stage:51:contractsent@{T0}"


T11 = [
    pytest.param("retail", "retail", id="T11-with-vertical"),
    pytest.param(None, "", id="T11-no-vertical-default-owners"),
]


@pytest.mark.parametrize(("vertical", "expected"), T11)
def test_t11_reassign(vertical: str | None, expected: str) -> None:
    d = run(c("mql", "reassign", vertical=vertical), ms("reassign"))
    check(
        d,
        updates=to(milestone="assigned"),
        actions=["assign_owner", "create_task"],
        rows=("T11",),
        task_kinds=["new_mql"],
    )
    assert dict(d.actions[0].params) == {"mode": "reassign", "vertical": expected}
    assert [a.key for a in d.actions] == [f"assign_owner:51:{T0}", f"new_mql:51:{T0}"]


def test_t11_neg_assigned_is_not_reassigned() -> None:
    check(run(c("mql", "assigned", contact_milestone_changed_at=str(T0))), **NOOP)


def test_t13_convert_to_customer() -> None:
    d = run(c("sql", "convert_to_customer"), ms("convert_to_customer"))
    check(
        d,
        updates=to("customer", "active"),
        actions=["set_company_poc", "update_deal_stage", ROLLUP],
        rows=("T13",),
    )
    assert dict(d.actions[1].params) == {"stage": "closedwon", "milestone": "convert_to_customer"}


def test_t13_neg_nothing_leaves_customer() -> None:
    for milestone in ("active", "inactive", "out_of_business", "dead"):
        d = run(
            c("customer", milestone, hubspotscore="900", contact_milestone_changed_at=str(T0)),
            make_email_event("DELIVERED"),
            prop_event("hubspotscore", "900"),
        )
        assert "contact_status" not in d.updates


# -- T15: milestone not allowed in the status -----------------------------------------------------
T15 = [
    pytest.param(
        make_contact(
            contact_status="prospect",
            contact_milestone="working",
            history={"contact_milestone": [entry("working", T0), entry("new", T0 - 5, by="app")]},
        ),
        [ms("working")],
        {"updates": to(milestone="new"), "task_kinds": ["reverted_milestone"], "rows": ("T15",)},
        id="T15-with-history",
    ),
    pytest.param(
        c("prospect", "working"),
        [ms("working")],
        {**NOOP, "needs_history": True, "rows": ("T15",)},
        id="T15-without-history",
    ),
    pytest.param(
        make_contact(
            contact_status="mql",
            contact_milestone="bogus",
            history={
                "contact_milestone": [
                    entry("bogus", T0),
                    entry("in_review", T0 - 5),
                    entry("assigned", T0 - 9, by="app"),
                ]
            },
        ),
        [],
        {"updates": to(milestone="in_review"), "rows": ("T15",)},
        id="T15-unknown-value",
    ),
    pytest.param(
        make_contact(
            contact_status="mql",
            contact_milestone="",
            history={"contact_milestone": [entry("", T0), entry("assigned", T0 - 9, by="app")]},
        ),
        [],
        {"updates": to(milestone="assigned"), "rows": ("T15",)},
        id="T15-cleared",
    ),
    pytest.param(
        make_contact(
            contact_status="sql",
            contact_milestone="qualified",
            history={"contact_milestone": [entry("qualified", T0)]},
        ),
        [],
        {"updates": to(milestone="working"), "rows": ("T15",)},
        id="T15-default-milestone",
    ),
    pytest.param(c("prospect", "qualified"), [], {"updates": to("sql", "working")}, id="T15-neg-allowed"),
]


@pytest.mark.parametrize(("contact", "events", "expect"), T15)
def test_t15_milestone_not_allowed(contact: Contact, events: list[dict[str, Any]], expect: dict[str, Any]) -> None:
    check(run(contact, *events), **expect)


def test_t15_task_says_why() -> None:
    contact = make_contact(
        contact_status="prospect",
        contact_milestone="working",
        history={"contact_milestone": [entry("working", T0)]},
    )
    task = run(contact, ms("working")).actions[0]
    assert task.params["subject"] == "Milestone reverted: Working is not allowed in Prospect"
    assert task.key == f"reverted_milestone:51:{T0}"


# -- T16: status locked ---------------------------------------------------------------------------
def status_history(
    *entries: dict[str, Any], milestone: list[dict[str, Any]] | None = None
) -> dict[str, list[dict[str, Any]]]:
    return {"contact_status": list(entries), "contact_milestone": milestone or []}


T16 = [
    pytest.param(
        make_contact(
            contact_status="customer",
            contact_milestone="assigned",
            history=status_history(entry("customer", T0), entry("mql", T0 - 5, by="app")),
        ),
        [prop_event("contact_status", "customer")],
        {
            "updates": to("mql"),
            "actions": ["create_task", ROLLUP],
            "task_kinds": ["reverted_status"],
            "rows": ("T16",),
        },
        id="T16-with-history",
    ),
    pytest.param(
        c("customer", "assigned"),
        [prop_event("contact_status", "customer")],
        {**NOOP, "needs_history": True, "rows": ("T16",)},
        id="T16-without-history",
    ),
    pytest.param(
        make_contact(contact_status="mql", contact_milestone="new", history=status_history(entry("mql", T0))),
        [],
        {"updates": to("prospect"), "rows": ("T16",)},
        id="T16-app-never-wrote-initial",
    ),
    pytest.param(
        make_contact(
            contact_status=None,
            contact_milestone="unqualified",
            milestone_reason="do_not_call",
            history=status_history(entry("", T0), entry("srl", T0 - 5, by="app")),
        ),
        [],
        {"updates": to("srl"), "rows": ("T16",)},
        id="T16-cleared-by-hand",
    ),
    pytest.param(c("lead", "new"), [], {**NOOP, "needs_history": True}, id="T16-unknown-without-history"),
    pytest.param(
        make_contact(
            contact_status="lead",
            contact_milestone="working",
            history=status_history(entry("lead", T0), entry("sql", T0 - 5, by="app")),
        ),
        [],
        {"updates": to("sql"), "rows": ("T16",)},
        id="T16-unknown-with-history",
    ),
    pytest.param(
        make_contact(
            contact_status="customer",
            contact_milestone="active",
            history=status_history(
                entry("customer", T0),
                entry("mql", T0 - 5, by="app"),
                milestone=[entry("active", T0), entry("assigned", T0 - 5, by="app")],
            ),
        ),
        [],
        {"updates": {**to("mql"), **to(milestone="assigned")}, "rows": ("T16", "T15")},
        id="T16-then-T15",
    ),
    pytest.param(
        c("mql", "assigned"),
        [prop_event("contact_status", "mql", echo=True)],
        {**NOOP, "reason": "echo"},
        id="T16-neg-echo",
    ),
    pytest.param(
        make_contact(
            contact_status="mql",
            contact_milestone="assigned",
            history=status_history(entry("mql", T0), entry("mql", T0 - 5, by="app")),
        ),
        [prop_event("contact_status", "mql")],
        NOOP,
        id="T16-neg-same-value",
    ),
    pytest.param(
        make_contact(
            contact_status="mql",
            contact_milestone="assigned",
            history=status_history(entry("mql", T0, by="app")),
        ),
        [prop_event("contact_status", "customer", at=T0 - 5)],
        NOOP,
        id="T16-neg-app-wrote-last",
    ),
]


@pytest.mark.parametrize(("contact", "events", "expect"), T16)
def test_t16_status_locked(contact: Contact, events: list[dict[str, Any]], expect: dict[str, Any]) -> None:
    check(run(contact, *events), **expect)


def test_t16_task_names_the_status() -> None:
    contact = make_contact(
        contact_status="customer",
        contact_milestone="assigned",
        history=status_history(entry("customer", T0), entry("mql", T0 - 5, by="app")),
    )
    task = run(contact).actions[0]
    assert task.params["subject"] == "Contact status is locked: reverted to MQL"
    assert task.key == f"reverted_status:51:{T0}"


# -- T17: dead is sticky for automation -----------------------------------------------------------
T17 = [
    pytest.param(
        c("prospect", "dead", hubspotscore="150"),
        [prop_event("hubspotscore", "150")],
        {**NOOP, "rows": ("T17",)},
        id="T17-score",
    ),
    pytest.param(c("prospect", "dead"), [make_email_event("DELIVERED")], {**NOOP, "rows": ("T17",)}, id="T17-campaign"),
    pytest.param(
        c("prospect", "dead"),
        [prop_event("hs_sequences_is_enrolled", "true")],
        {**NOOP, "rows": ("T17",)},
        id="T17-sequence",
    ),
    pytest.param(
        c("prospect", "qualified", hubspotscore="150"),
        [ms("qualified")],
        {"updates": to("sql", "working"), "rows": ("T6",)},
        id="T17-neg-rep-may-revive-by-hand",
    ),
]


@pytest.mark.parametrize(("contact", "events", "expect"), T17)
def test_t17_dead_is_sticky(contact: Contact, events: list[dict[str, Any]], expect: dict[str, Any]) -> None:
    check(run(contact, *events), **expect)


# -- fixed point, redelivery, echoes, order -------------------------------------------------------
def test_fixed_point_created_with_score_150() -> None:
    d = run(make_contact(hubspotscore="150"), created_event())
    check(d, updates=to("mql", "assigned"), actions=["assign_owner", "create_task", ROLLUP], rows=("T1", "T3"))


def test_fixed_point_created_delivered_and_scored() -> None:
    d = run(make_contact(hubspotscore="150"), created_event(), make_email_event("DELIVERED", created=T0 + 1))
    assert d.rows == ("T1", "T2", "T3") and dict(d.updates) == to("mql", "assigned")


REDELIVERY = [
    pytest.param(make_contact(hubspotscore="150"), [created_event()], id="T1-T3"),
    pytest.param(c("mql", "reassign", vertical="retail"), [ms("reassign")], id="T11"),
    pytest.param(c("prospect", "qualified"), [ms("qualified")], id="T6"),
    pytest.param(c("sql", "convert_to_customer"), [ms("convert_to_customer")], id="T13"),
    pytest.param(c("sql", "return_to_nurture"), [ms("return_to_nurture")], id="T8"),
    pytest.param(c("mql", "dead", contact_milestone_changed_at=OLD), [ms("dead")], id="T5"),
    pytest.param(
        make_contact(
            contact_status="customer",
            contact_milestone="inactive",
            history=status_history(entry("customer", T0), entry("mql", T0 - 5, by="app")),
        ),
        [],
        id="T16-T15",
    ),
]


@pytest.mark.parametrize(("contact", "events"), REDELIVERY)
def test_redelivery_produces_identical_action_keys(contact: Contact, events: list[dict[str, Any]]) -> None:
    first = run(contact, *events, now=NOW)
    again = run(contact, *events, *events, now=NOW + 86_400_000)  # delivered twice, a day later
    assert first.actions and [a.key for a in first.actions] == [a.key for a in again.actions]
    assert [dict(a.params) for a in first.actions] == [dict(a.params) for a in again.actions]


ECHOES = [
    pytest.param(ms("assigned", echo=True), id="milestone"),
    pytest.param(prop_event("contact_status", "mql", echo=True), id="status"),
    pytest.param(prop_event("contact_milestone_changed_at", S, echo=True), id="stamp"),
    pytest.param(created_event(changeSource="INTEGRATION", sourceId=int(APP_ID)), id="numeric-source-id"),
]


@pytest.mark.parametrize("event", ECHOES)
def test_echoes_are_ignored(event: dict[str, Any]) -> None:
    d = run(c("prospect", "new", hubspotscore="500"), event)  # would be T3 if evaluated
    check(d, **NOOP, reason="echo")


def test_another_integration_is_not_an_echo() -> None:
    d = run(
        c("mql", "in_review", contact_milestone_changed_at=OLD),
        ms("in_review", changeSource="INTEGRATION", sourceId="999"),
    )
    assert d.rows == ("T10",)


def test_triggers_apply_in_occurred_at_order() -> None:
    contact = c("prospect", "new", hubspotscore="150")
    events = [
        created_event(occurredAt=T0),
        make_email_event("DELIVERED", created=T0 + 5),
        ms("new", at=T0 + 9),
    ]
    assert run(contact, *events) == run(contact, *reversed(events))


def test_deleted_contact_is_skipped() -> None:
    d = run(c("mql", "assigned"), make_event_kind("contact.deletion"))
    assert d.skip and d.is_noop and "deleted" in d.reason


def test_restored_after_deletion_is_evaluated() -> None:
    d = run(
        make_contact(),
        make_event_kind("contact.deletion", at=T0),
        make_event_kind("contact.restore", at=T0 + 1),
    )
    assert not d.skip and d.rows == ("T1",)


def test_merge_recomputes_the_survivor_and_its_companies() -> None:
    event = make_event_kind("contact.merge", primaryObjectId=51, mergedObjectIds=[52], newObjectId=None)
    d = run(c("mql", "assigned"), event)
    assert types(d) == [ROLLUP] and not d.updates and "merge" in d.reason


def test_a_contact_merged_away_is_skipped() -> None:
    event = make_event_kind("contact.merge", primaryObjectId=77, mergedObjectIds=[51, 77])
    d = run(c("mql", "assigned"), event)
    assert d.skip and d.is_noop and "merged into another contact" in d.reason


ASSOCIATIONS = [
    pytest.param("CONTACT_TO_COMPANY", [ROLLUP], id="company"),
    pytest.param("COMPANY_TO_CONTACT", [ROLLUP], id="company-reverse"),
    pytest.param("CONTACT_TO_DEAL", [], id="neg-deal"),
]


@pytest.mark.parametrize(("association", "expected"), ASSOCIATIONS)
def test_association_change_rolls_up_companies(association: str, expected: list[str]) -> None:
    event = make_event_kind(
        "contact.associationChange",
        associationType=association,
        fromObjectId=51,
        toObjectId=9001,
        associationRemoved=True,
    )
    d = run(c("sql", "working"), event)
    assert types(d) == expected


def test_status_change_and_association_give_one_rollup() -> None:
    event = make_event_kind(
        "contact.associationChange", associationType="CONTACT_TO_COMPANY", fromObjectId=51, toObjectId=9001
    )
    d = run(c("sql", "convert_to_customer"), event)
    assert types(d).count(ROLLUP) == 1 and d.actions[-1].key == "rollup_companies:51:customer@0"


def make_event_kind(subscription: str, at: int = T0, **overrides: Any) -> dict[str, Any]:
    fields = {"subscriptionType": subscription, "occurredAt": at, "propertyName": None, "propertyValue": None}
    return make_event(**{**fields, **overrides})


# -- totality: every status × milestone × trigger kind yields a Decision ---------------------------
def _variants() -> list[Any]:
    """One trigger (or none) of every kind the worker sees; "{m}"/"{s}" stand for the contact's own values."""
    assoc = {"associationType": "CONTACT_TO_COMPANY", "fromObjectId": 51, "toObjectId": 9001}
    return [
        pytest.param(None, id="reconcile"),
        pytest.param(created_event(), id="created"),
        pytest.param(ms("{m}"), id="milestone-to-current"),
        pytest.param(ms("bogus"), id="milestone-unknown"),
        pytest.param(ms("{m}", echo=True), id="milestone-echo"),
        pytest.param(prop_event("contact_status", "{s}"), id="status-by-hand"),
        pytest.param(prop_event("hubspotscore", "150"), id="score"),
        pytest.param(prop_event("milestone_reason", "unable_to_contact"), id="reason"),
        pytest.param(prop_event("hs_email_optout", "true"), id="optout"),
        pytest.param(prop_event("hs_email_bad_address", "true", at=T0 - 500_000), id="bad-address-old"),
        pytest.param(prop_event("hs_sequences_is_enrolled", "true"), id="sequence"),
        pytest.param(prop_event("hs_email_delivered", "4"), id="delivered-count"),
        pytest.param(make_email_event("DELIVERED"), id="email-delivered"),
        pytest.param(make_email_event("BOUNCE"), id="email-hard-bounce"),
        pytest.param(make_email_event("BOUNCE", category="MAILBOX_FULL"), id="email-soft-bounce"),
        pytest.param(make_email_event("STATUSCHANGE", unsubscribed=True), id="email-unsubscribe"),
        pytest.param(make_email_event("SPAMREPORT"), id="email-spam"),
        pytest.param(make_email_event("OPEN"), id="email-open"),
        pytest.param(make_event_kind("contact.deletion"), id="deleted"),
        pytest.param(make_event_kind("contact.privacyDeletion"), id="privacy-deleted"),
        pytest.param(make_event_kind("contact.merge", primaryObjectId=51, mergedObjectIds=[52]), id="merged"),
        pytest.param(make_event_kind("contact.associationChange", **assoc), id="association"),
        pytest.param(make_event_kind("contact.restore"), id="restored"),
    ]


def _histories(status: str | None, milestone: str | None) -> list[dict[str, list[dict[str, Any]]] | None]:
    by_person = {
        "contact_status": [entry(status or "", T0), entry("mql", T0 - 9, by="app")],
        "contact_milestone": [entry(milestone or "", T0), entry("in_review", T0 - 9)],
        "hs_email_optout": [entry("true", T0 - 5)],
    }
    by_app = {
        "contact_status": [entry(status or "", T0 - 9, by="app")],
        "contact_milestone": [entry(milestone or "", T0 - 9, by="app")],
    }
    return [None, by_person, by_app]


def _fill(event: dict[str, Any] | None, status: str | None, milestone: str | None) -> list[dict[str, Any]]:
    if event is None:
        return []
    if event.get("propertyValue") in ("{m}", "{s}"):
        event = {**event, "propertyValue": milestone if event["propertyValue"] == "{m}" else status}
    return [event]


@pytest.mark.parametrize("event", _variants())
def test_totality_every_state_and_trigger_yields_an_allowed_decision(event: dict[str, Any] | None) -> None:
    pol = policy()
    statuses = [*pol.status_values, "bogus", None, ""]
    milestones = [*pol.milestone_labels, "bogus", None, ""]
    for status in statuses:
        for milestone in milestones:
            for history in _histories(status, milestone):
                for reason in (None, "do_not_call"):
                    contact = make_contact(
                        contact_status=status,
                        contact_milestone=milestone,
                        hubspotscore="150",
                        milestone_reason=reason,
                        contact_milestone_changed_at=OLD,
                        history=history,
                    )
                    events = _fill(event, status, milestone)
                    d = run(contact, *events)
                    _assert_sound(contact, d)
                    assert keys_of(run(contact, *events, now=NOW + 1)) == keys_of(d)  # no clock in keys


def keys_of(d: Decision) -> list[str]:
    return [a.key for a in d.actions]


def _assert_sound(contact: Contact, d: Decision) -> None:
    pol = policy()
    assert isinstance(d, Decision) and d.reason.endswith(".") and "\n" not in d.reason
    assert all(isinstance(v, str) for v in d.updates.values())
    assert len(set(keys_of(d))) == len(d.actions)
    if d.needs_history or d.skip:
        assert d.is_noop
    if "contact_status" in d.updates or "contact_milestone" in d.updates:
        status, milestone = final_pair(contact, d)
        found = pol.status(status)
        assert found is not None and milestone in found.allowed, (status, milestone, d.reason)
        assert "contact_milestone_changed_at" in d.updates or "contact_milestone" not in d.updates
        assert "contact_status_changed_at" in d.updates or "contact_status" not in d.updates


_text = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "prospect",
            "mql",
            "srl",
            "sql",
            "customer",
            "new",
            "dead",
            "working",
            "return_to_nurture",
            "true",
            "150",
            "",
        ]
    ),
    st.text(max_size=8),
)


@settings(max_examples=200, deadline=None)
@given(
    props=st.dictionaries(
        st.sampled_from(
            [
                "contact_status",
                "contact_milestone",
                "hubspotscore",
                "milestone_reason",
                "contact_milestone_changed_at",
                "hs_email_optout",
                "vertical",
                "gmv_forecast",
                "hs_sequences_is_enrolled",
            ]
        ),
        _text,
    ),
    name=st.sampled_from(["contact_status", "contact_milestone", "hubspotscore", "hs_email_optout", "other"]),
    value=_text,
    at=st.integers(min_value=0, max_value=2 * T0),
    source=st.sampled_from(["CRM_UI", "INTEGRATION"]),
    with_history=st.booleans(),
)
def test_totality_fuzz(
    props: dict[str, str | None], name: str, value: str | None, at: int, source: str, with_history: bool
) -> None:
    history = {
        "contact_status": [entry(props.get("contact_status") or "", at)],
        "contact_milestone": [entry(props.get("contact_milestone") or "", at, by="app")],
    }
    props = {"contact_status": None, "contact_milestone": None, **props}  # the worker always reads both
    contact = make_contact(history=history if with_history else None, **props)
    event = prop_event(name, value, at=at, changeSource=source, sourceId=APP_ID)
    _assert_sound(contact, run(contact, event))


def test_a_property_the_contact_lacks_takes_the_trigger_value() -> None:
    """explain with a sparse contact: the event's value fills a property the contact does not carry."""
    d = run(make_contact(contact_status="prospect", contact_milestone="new"), prop_event("hubspotscore", "120"))
    assert d.rows == ("T3",)
    d = run(c("prospect", "new", hubspotscore="12"), prop_event("hubspotscore", "120"))  # state wins
    assert d.is_noop and "score 12 is below" in d.reason


def test_reason_is_one_line_whatever_the_values() -> None:
    d = run(make_contact(contact_status="\n", contact_milestone="x\ny"), prop_event("contact_status", "\n"))
    assert d.needs_history and "\n" not in d.reason and d.reason.endswith(".")


# -- restore: a person's change lost to a concurrent worker write (chaos Finding 2b) ---------------
# The worker decided at D (its stamp), a person set the milestone at T0, the worker wrote at W.
D, W = T0 - 50, T0 + 300


def raced(status: str, current: str, person: str, *, stamp: int = D, **props: Any) -> Contact:
    """`current` written by the app at W over `person`'s change at T0, decided at `stamp`."""
    entries = [entry(current, W, by="app"), entry(person, T0), entry("new", T0 - 9_000, by="app")]
    history = {"contact_milestone": entries}
    return make_contact(contact_status=status, contact_milestone=current, contact_milestone_changed_at=str(stamp),
                        history=history, **props)


RESTORE = [
    pytest.param(  # T2 wrote received_campaigns over the rep's qualified: back to qualified, then T6
        raced("prospect", "received_campaigns", "qualified", gmv_forecast="10"),
        [ms("qualified")],
        {"updates": to("sql", "working"), "actions": ["create_deal", ROLLUP], "rows": ("restore", "T6")},
        id="restore-qualified-then-T6",
    ),
    pytest.param(  # the rep's dead is back, and unsubscribes (keyed on the rep's time)
        raced("prospect", "received_campaigns", "dead"),
        [],
        {"updates": {"contact_milestone": "dead", **stamped()}, "actions": ["unsubscribe_all"],
         "rows": ("restore", "T5")},
        id="restore-dead-then-T5",
    ),
    pytest.param(  # a stale bounce's dead over the rep's later in_review: in_review is back, the bounce stays stale
        raced("mql", "dead", "in_review"),
        [make_email_event("BOUNCE", created=T0 - 20)],
        {"updates": {"contact_milestone": "in_review", **stamped()}, "rows": ("restore", "T10")},
        id="restore-over-a-stale-dead",
    ),
    pytest.param(  # the worker decided after the rep's change (it saw it): nothing to restore
        raced("prospect", "received_campaigns", "qualified", stamp=T0 + 10),
        [ms("qualified")],
        NOOP,
        id="restore-neg-decided-after-the-change",
    ),
    pytest.param(  # the newest change is the person's: nothing was overwritten
        make_contact(contact_status="mql", contact_milestone="in_review", contact_milestone_changed_at=str(D),
                     history={"contact_milestone": [entry("in_review", W), entry("assigned", T0, by="app")]}),
        [],
        {"updates": stamped(W), "rows": ("T10",)},
        id="restore-neg-newest-by-a-person",
    ),
    pytest.param(  # without history: a rep's event newer than the stamp, not the current value → ask
        c("prospect", "received_campaigns", contact_milestone_changed_at=str(D)),
        [ms("qualified")],
        {**NOOP, "needs_history": True, "rows": ("restore",)},
        id="restore-without-history-needs-history",
    ),
    pytest.param(  # without history: the event is older than the stamp: the worker saw it
        c("prospect", "received_campaigns", contact_milestone_changed_at=str(T0 + 10)),
        [ms("qualified")],
        {**NOOP},
        id="restore-neg-without-history-event-older-than-stamp",
    ),
]


@pytest.mark.parametrize(("contact", "events", "expect"), RESTORE)
def test_restore_a_change_a_concurrent_write_overwrote(
    contact: Contact, events: list[dict[str, Any]], expect: dict[str, Any]
) -> None:
    check(run(contact, *events), **expect)


def test_restore_converges_after_the_worker_writes_again() -> None:
    """Once the worker has written from the restored value (a newer stamp), the rule is quiet."""
    first = run(raced("prospect", "received_campaigns", "qualified", gmv_forecast="10"), ms("qualified"))
    assert first.rows == ("restore", "T6")
    again = make_contact(
        contact_status="sql", contact_milestone="working", contact_milestone_changed_at=S, gmv_forecast="10",
        history={"contact_milestone": [entry("working", NOW + 200, by="app"), entry("received_campaigns", W, by="app"),
                                       entry("qualified", T0)]},
    )
    assert run(again, ms("qualified")).is_noop
