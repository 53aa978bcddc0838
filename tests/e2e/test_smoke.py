from tests.e2e.system import System


def test_contact_created_with_high_score_becomes_mql_with_owner_and_task(system: System) -> None:
    cid = system.rep_create_contact(email="ann@example.test", firstname="Ann", hubspotscore=150, vertical="retail")
    system.settle()
    props = system.contact(cid)
    assert (props["contact_status"], props["contact_milestone"]) == ("mql", "assigned")
    assert props["hubspot_owner_id"] in ("201", "202")
    assert system.failed_jobs() == []
