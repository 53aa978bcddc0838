"""Every spec row end to end: the rep's change (or HubSpot's email event) comes in as the
sandbox's signed webhook, the worker decides, and the write-back is read back from the sandbox."""

from __future__ import annotations

from tests.e2e.system import System


def _state(system: System, cid: str) -> tuple[str, str]:
    p = system.contact(cid)
    return p["contact_status"], p["contact_milestone"]


def _tasks(system: System, contact_id: str | None = None) -> list[str]:
    return [t["properties"].get("hs_task_subject") or "" for t in system.objects("tasks")
            if contact_id is None or contact_id in str(t["properties"].get("hs_task_body", ""))]


def _mql(system: System, **props: object) -> str:
    cid = system.rep_create_contact(email=f"{len(system.objects('contacts'))}@ex.test", hubspotscore=120,
                                    vertical="marketplace", **props)
    system.settle()
    assert _state(system, cid) == ("mql", "assigned")
    return cid


def _sql(system: System, **props: object) -> str:
    cid = _mql(system, **props)
    system.rep_update(cid, contact_milestone="sales_qualified")
    system.settle()
    assert _state(system, cid) == ("sql", "working")
    return cid


def test_t1_created_contact_is_prospect_new(system: System) -> None:
    cid = system.rep_create_contact(email="a@ex.test")
    system.settle()
    assert _state(system, cid) == ("prospect", "new")
    assert system.contact(cid)["contact_status_changed_at"]


def test_t2_delivered_campaign_email_and_sequence_enrollment(system: System) -> None:
    a = system.rep_create_contact(email="a@ex.test")
    b = system.rep_create_contact(email="b@ex.test")
    system.settle()
    system.email_event(type="DELIVERED", recipient="a@ex.test", emailCampaignId=11)
    system.hubspot_sets(b, hs_sequences_is_enrolled="true")
    system.settle()
    assert _state(system, a) == ("prospect", "received_campaigns")
    assert _state(system, b) == ("prospect", "received_campaigns")


def test_t3_score_reaching_100_makes_mql_with_owner_and_task_and_99_does_nothing(system: System) -> None:
    low = system.rep_create_contact(email="low@ex.test", hubspotscore=99, vertical="retail")
    high = system.rep_create_contact(email="high@ex.test", hubspotscore=10, vertical="retail")
    system.settle()
    system.rep_update(high, hubspotscore=100)
    system.settle()
    assert _state(system, low) == ("prospect", "new")
    assert _state(system, high) == ("mql", "assigned")
    assert system.contact(high)["hubspot_owner_id"] in ("201", "202")
    assert _tasks(system, high) == ["New MQL: acknowledge"]


def test_t4_hard_bounce_makes_milestone_dead_status_unchanged_and_t17_dead_is_sticky(system: System) -> None:
    cid = system.rep_create_contact(email="bounce@ex.test")
    system.settle()
    system.email_event(type="BOUNCE", category="HARD_BOUNCE", recipient="bounce@ex.test")
    system.settle()
    assert _state(system, cid) == ("prospect", "dead")
    system.rep_update(cid, hubspotscore=150)  # T17: automation does not revive a dead contact
    system.settle()
    assert _state(system, cid) == ("prospect", "dead")


def test_t4_unsubscribe_on_an_mql(system: System) -> None:
    cid = _mql(system)
    email = system.contact(cid)["email"]
    system.email_event(type="STATUSCHANGE", recipient=email, subscriptions=[{"status": "UNSUBSCRIBED"}])
    system.settle()
    assert _state(system, cid) == ("mql", "dead")


def test_t5_rep_sets_dead_unsubscribes_from_all_email(system: System) -> None:
    cid = _mql(system)
    system.rep_update(cid, contact_milestone="dead")
    system.settle()
    props = system.contact(cid)
    assert (props["contact_status"], props["contact_milestone"]) == ("mql", "dead")
    assert props["hs_email_optout"] == "true"
    calls = system.stats()["calls"]  # the v4 batch endpoint (the sandbox grants its scope), once
    assert calls.get("POST /communication-preferences/v4/statuses/batch/unsubscribe-all") == 1
    assert calls.get("POST /communication-preferences/v4/statuses/{email}/unsubscribe-all") is None


def test_t6_qualified_prospect_becomes_sql_with_one_deal_carrying_the_gmv(system: System) -> None:
    company = system.rep_create_company(name="Acme")
    cid = system.rep_create_contact(email="q@ex.test", firstname="Quinn", gmv_forecast=5000)
    system.rep_associate(cid, company)
    system.settle()
    system.rep_update(cid, contact_milestone="qualified")
    system.settle()
    assert _state(system, cid) == ("sql", "working")
    deals = system.objects("deals")
    assert len(deals) == 1
    assert deals[0]["properties"]["amount"] == "5000"
    assert deals[0]["properties"]["dealstage"] == "appointmentscheduled"
    assert "Acme" in deals[0]["properties"]["dealname"]
    assert system.company(company)["account_status"] == "sql"


def test_t6_without_gmv_creates_the_deal_and_a_task(system: System) -> None:
    cid = _sql(system)
    assert len(system.objects("deals")) == 1
    assert "Add GMV forecast to the deal" in _tasks(system, cid)


def test_t7_unqualified_with_reason_goes_to_srl(system: System) -> None:
    cid = _mql(system)
    system.rep_update(cid, contact_milestone="unqualified", milestone_reason="never_a_good_fit")
    system.settle()
    assert _state(system, cid) == ("srl", "unqualified")


def test_t8_return_to_nurture_without_reason_holds_with_a_task_then_the_reason_releases_it(system: System) -> None:
    cid = _sql(system)
    system.rep_update(cid, contact_milestone="return_to_nurture")
    system.settle()
    assert _state(system, cid) == ("sql", "return_to_nurture")
    assert any(t.startswith("Reason required") for t in _tasks(system, cid))
    system.rep_update(cid, milestone_reason="do_not_call")  # a reason of the wrong kind: still held
    system.settle()
    assert _state(system, cid) == ("sql", "return_to_nurture")
    system.rep_update(cid, milestone_reason="no_budget_now")
    system.settle()
    assert _state(system, cid) == ("srl", "return_to_nurture")
    assert sum(t.startswith("Reason required") for t in _tasks(system, cid)) == 1


def test_t9_srl_switches_between_nurture_and_unqualified_with_a_valid_reason(system: System) -> None:
    cid = _mql(system)
    system.rep_update(cid, contact_milestone="return_to_nurture", milestone_reason="unable_to_contact")
    system.settle()
    assert _state(system, cid) == ("srl", "return_to_nurture")
    system.rep_update(cid, contact_milestone="unqualified", milestone_reason="invalid_email")
    system.settle()
    assert _state(system, cid) == ("srl", "unqualified")


def test_t10_in_review_stays_mql_and_stamps_the_acknowledgement(system: System) -> None:
    cid = _mql(system)
    before = system.contact(cid)["contact_milestone_changed_at"]
    system.rep_update(cid, contact_milestone="in_review")
    system.settle()
    props = system.contact(cid)
    assert (props["contact_status"], props["contact_milestone"]) == ("mql", "in_review")
    assert props["contact_milestone_changed_at"] != before


def test_t11_reassign_routes_to_the_new_vertical_and_goes_back_to_assigned(system: System) -> None:
    cid = _mql(system)
    assert system.contact(cid)["hubspot_owner_id"] in ("101", "102")
    system.rep_update(cid, contact_milestone="reassign", vertical="wholesale")
    system.settle()
    props = system.contact(cid)
    assert (props["contact_status"], props["contact_milestone"]) == ("mql", "assigned")
    assert props["hubspot_owner_id"] in ("301", "302")


def test_t12_contract_negotiations_moves_the_deal(system: System) -> None:
    cid = _sql(system)
    system.rep_update(cid, contact_milestone="contract_negotiations")
    system.settle()
    assert _state(system, cid) == ("sql", "contract_negotiations")
    assert [d["properties"]["dealstage"] for d in system.objects("deals")] == ["contractsent"]


def test_t13_convert_to_customer_poc_rollup_suppression_and_closed_won(system: System) -> None:
    company = system.rep_create_company(name="Buyer Inc")
    other = system.rep_create_contact(email="other@ex.test")
    system.rep_associate(other, company)
    cid = _sql(system)
    system.rep_associate(cid, company)
    system.settle()
    system.rep_update(cid, contact_milestone="convert_to_customer")
    system.settle()
    assert _state(system, cid) == ("customer", "active")
    assert system.company(company) | {} == {**system.company(company), "account_status": "customer",
                                            "poc_contact_id": cid}
    assert system.contact(other)["lead_gen_suppressed"] == "true"
    assert _state(system, other) == ("prospect", "new")  # only the POC becomes customer
    assert [d["properties"]["dealstage"] for d in system.objects("deals")] == ["closedwon"]


def test_t14_customer_inactive_stays_customer(system: System) -> None:
    cid = _sql(system)
    system.rep_update(cid, contact_milestone="convert_to_customer")
    system.settle()
    system.rep_update(cid, contact_milestone="inactive")
    system.settle()
    assert _state(system, cid) == ("customer", "inactive")


def test_t15_milestone_not_allowed_is_reverted_with_a_task(system: System) -> None:
    cid = _mql(system)
    system.rep_update(cid, contact_milestone="in_review")
    system.settle()
    system.rep_update(cid, contact_milestone="working")  # an SQL milestone on an MQL
    system.settle()
    assert _state(system, cid) == ("mql", "in_review")
    assert any(t.startswith("Milestone reverted") for t in _tasks(system, cid))


def test_t16_status_edited_by_hand_is_reverted(system: System) -> None:
    cid = _mql(system)
    system.rep_update(cid, contact_status="customer")
    system.settle()
    assert _state(system, cid) == ("mql", "assigned")
    assert any(t.startswith("Contact status is locked") for t in _tasks(system, cid))


def test_rollup_takes_the_highest_status_and_follows_association_changes(system: System) -> None:
    company = system.rep_create_company(name="Roll")
    a = system.rep_create_contact(email="a@ex.test")
    system.rep_associate(a, company)
    system.settle()
    assert system.company(company)["account_status"] == "prospect"
    b = _mql(system)
    system.rep_associate(b, company)
    system.settle()
    assert system.company(company)["account_status"] == "mql"
    assert system.failed_jobs() == []


def test_a_contact_of_a_customer_account_stays_suppressed_when_its_other_company_recomputes(system: System) -> None:
    buyer = system.rep_create_company(name="Buyer")
    other_co = system.rep_create_company(name="Elsewhere")
    shared = system.rep_create_contact(email="shared@ex.test")
    system.rep_associate(shared, buyer)
    system.rep_associate(shared, other_co)
    poc = _sql(system)
    system.rep_associate(poc, buyer)
    system.settle()
    system.rep_update(poc, contact_milestone="convert_to_customer")
    system.settle()
    assert system.contact(shared)["lead_gen_suppressed"] == "true"
    newcomer = system.rep_create_contact(email="new@ex.test", hubspotscore=150)  # recomputes "Elsewhere"
    system.rep_associate(newcomer, other_co)
    system.settle()
    assert system.company(other_co)["account_status"] == "mql"
    assert system.contact(shared)["lead_gen_suppressed"] == "true"
