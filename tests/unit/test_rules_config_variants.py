"""The rules read names and rows from the Policy, and stay total with unusual configurations."""

from __future__ import annotations

import dataclasses

from rules.diagram import mermaid
from rules.policy import ContactProps, ManualTransition, Policy, Target, TaskTemplate
from tests.factories import NOW, T0, make_contact, make_email_event, policy, prop_event, run, types

OLD = str(T0 - 100_000)


def variant(**changes: object) -> Policy:
    return dataclasses.replace(policy(), **changes)  # type: ignore[arg-type]


def test_lead_gen_campaign_list() -> None:
    listed = variant(lead_gen_campaign_ids=frozenset({"77"}))
    contact = make_contact(contact_status="prospect", contact_milestone="new")
    assert run(contact, make_email_event("DELIVERED"), pol=listed).rows == ("T2",)
    assert run(contact, make_email_event("DELIVERED", emailCampaignId=5), pol=listed).is_noop


def test_bounce_types_without_categories_count_every_bounce() -> None:
    anything = variant(health_event_types={"BOUNCE": ()})
    d = run(
        make_contact(contact_status="mql", contact_milestone="assigned"),
        make_email_event("BOUNCE", category="MAILBOX_FULL"),
        pol=anything,
    )
    assert d.updates["contact_milestone"] == "dead"


def test_custom_threshold_and_property_names() -> None:
    names = dataclasses.replace(ContactProps(), status="lc_status", milestone="lc_step")
    custom = variant(score_threshold=42.5, score_property="lead_score", contact=names)
    contact = make_contact(lc_status="prospect", lc_step="new", lead_score="43")
    d = run(contact, prop_event("lead_score", "43"), pol=custom)
    assert d.rows == ("T3",) and d.updates["lc_status"] == "mql" and d.updates["lc_step"] == "assigned"
    assert run(make_contact(lc_status="prospect", lc_step="new", lead_score="42"), pol=custom).reason == (
        "Nothing to do: score 42 is below the threshold 42.5."
    )


def test_a_cycle_in_config_stops_after_ten_steps() -> None:
    cycle = (
        ManualTransition("T6", "prospect", "qualified", Target("prospect", "unqualified")),
        ManualTransition("T7", "prospect", "unqualified", Target("prospect", "qualified")),
    )
    d = run(
        make_contact(contact_status="prospect", contact_milestone="qualified"),
        pol=variant(manual_transitions=cycle),
    )
    assert d.rows == ("T6", "T7") and "stopped after 10 steps" in d.reason and d.reason.endswith(".")


def test_missing_and_malformed_task_templates() -> None:
    tasks = {"reason_required": TaskTemplate("Reason {milestone} {", 8)}
    d = run(make_contact(contact_status="sql", contact_milestone="return_to_nurture"),
            prop_event("contact_milestone", "return_to_nurture"), pol=variant(tasks=tasks))
    assert d.actions[0].params["subject"] == "Reason {milestone} {" and d.actions[0].params["due_in_hours"] == "8"
    d = run(make_contact(contact_status="mql", contact_milestone="reassign"), pol=variant(tasks={}))
    task = d.actions[1].params
    assert task["subject"] == "new_mql" and task["due_in_hours"] == "24"
    unknown_field = {"new_mql": TaskTemplate("Hi {nobody}", 1)}
    d = run(make_contact(contact_status="mql", contact_milestone="reassign"), pol=variant(tasks=unknown_field))
    assert d.actions[1].params["subject"] == "Hi {nobody}"


def test_row_without_configured_deal_stage() -> None:
    d = run(
        make_contact(contact_status="sql", contact_milestone="contract_negotiations", contact_milestone_changed_at=OLD),
        prop_event("contact_milestone", "contract_negotiations"),
        pol=variant(deal_stages={}),
    )
    assert types(d) == [] and "no deal stage is configured" in d.reason


def test_configured_unsubscribe_row_and_unknown_action() -> None:
    rows = (ManualTransition("T14", "customer", "inactive", actions=("unsubscribe_all", "teleport")),)
    d = run(
        make_contact(contact_status="customer", contact_milestone="inactive", contact_milestone_changed_at=OLD),
        prop_event("contact_milestone", "inactive"),
        pol=variant(manual_transitions=rows),
    )
    assert types(d) == ["unsubscribe_all"] and d.actions[0].key == f"unsubscribe_all:51:{T0}"


def test_campaign_target_in_another_status_is_a_status_change() -> None:
    moved = variant(campaign_to=Target("mql", "assigned"))
    d = run(
        make_contact(contact_status="prospect", contact_milestone="new"),
        make_email_event("DELIVERED"),
        pol=moved,
    )
    assert d.updates["contact_status"] == "mql" and d.updates["contact_status_changed_at"] == str(NOW)
    assert types(d) == ["rollup_companies"]


def test_diagram_is_generated_from_config() -> None:
    text = mermaid(policy())
    assert text.startswith("stateDiagram-v2\n") and text.endswith("\n")
    for status in policy().statuses:
        assert f"state {status.value} {{" in text
    for edge in (
        "[*] --> prospect : T1",
        "prospect --> mql : T3 score ≥ 100",
        "prospect --> sql : T6 qualified",
        "mql --> srl : T7 unqualified + reason / T7 return_to_nurture + reason",
        "sql --> customer : T13 convert_to_customer",
        "mql__reassign --> mql__assigned : T11",
        "srl__unqualified --> srl__return_to_nurture : T9 with a reason",
        "prospect__new --> prospect__received_campaigns : T2",
        'state "Dead (auto)" as customer__dead',
    ):
        assert edge in text, edge
    renamed = variant(milestone_labels={**policy().milestone_labels, "new": 'Brand "new": {yes}; #1'})
    assert "Brand 'new'  (yes), no. 1 (auto)" in mermaid(renamed)


def test_diagram_without_statuses() -> None:
    assert mermaid(variant(statuses=())).startswith("stateDiagram-v2")


def test_policy_lookups_the_worker_uses() -> None:
    pol = policy()
    assert pol.rank("prospect") == 1 and pol.rank("customer") == 5 and pol.rank("bogus") == 0 and pol.rank(None) == 0
    assert pol.transition("mql", "new") is None
    read = pol.read_properties
    assert read[:2] == ("contact_status", "contact_milestone") and len(read) == len(set(read))
    assert {"hubspotscore", "hs_sequences_is_enrolled", "hs_email_optout", "hs_email_delivered"} <= set(read)
    assert {"contact_milestone", "milestone_reason", "hubspotscore"} <= pol.trigger_properties
    assert pol.history_properties[:2] == ("contact_status", "contact_milestone")
