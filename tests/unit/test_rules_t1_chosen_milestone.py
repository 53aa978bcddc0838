"""T1 keeps a milestone a person chose before the worker ever saw the contact (chaos Finding 1)."""

from __future__ import annotations

from tests.factories import created_event, make_contact, run


def test_a_contact_created_qualified_becomes_sql_in_one_decision() -> None:
    decision = run(make_contact(contact_milestone="qualified"), created_event())
    assert decision.rows[:2] == ("T1", "T6")
    assert decision.updates["contact_status"] == "sql"
    assert decision.updates["contact_milestone"] == "working"
    assert [a.type for a in decision.actions if a.type == "create_deal"]


def test_a_milestone_not_chosen_by_hand_in_prospect_still_starts_new() -> None:
    decision = run(make_contact(contact_milestone="working"), created_event())
    assert decision.updates["contact_status"] == "prospect"
    assert decision.updates["contact_milestone"] == "new"
