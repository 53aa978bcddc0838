"""Deterministic reproductions of what the chaos scenarios found (docs/chaos.md, Findings).

Each test states what the rules (lifecycle-spec.md) require. Findings 1, 2, 4 and 9 are fixed,
and these tests keep them fixed; the reproduction of a new finding goes here marked
xfail(strict=True) until its fix lands. They run in-process (tests/e2e/system.py), in a
second or two each.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import pytest
import requests

from tests.e2e.system import APP_ID, SECRET, System
from webhooks.testing import signed_headers

pytestmark = pytest.mark.chaos


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _tasks(system: System, cid: str, kind: str) -> list[dict[str, Any]]:
    return [t for t in system.objects("tasks")
            if f"[lifecycle {kind}:{cid}:" in (t["properties"].get("hs_task_body") or "")]


def _deliver_late(system: System, cid: str, prop: str) -> None:
    """Deliver, signed as HubSpot would, the webhook of the newest change of `prop` (built from
    the contact's history, so occurredAt is the change's own time) — as a late retry would."""
    dump = system.session.get(f"{system.base}/_sandbox/objects/contacts/{cid}", timeout=10).json()
    entry = dump["propertiesWithHistory"][prop][0]
    event = {"eventId": 770001, "subscriptionId": 1, "portalId": 62515, "appId": int(APP_ID),
             "occurredAt": _ms(entry["timestamp"]), "subscriptionType": "contact.propertyChange",
             "attemptNumber": 3, "objectId": int(cid), "changeFlag": "UPDATED",
             "changeSource": entry["sourceType"], "sourceId": entry["sourceId"],
             "propertyName": prop, "propertyValue": entry["value"]}
    url = f"{system.web_url}/webhooks/hubspot"
    body = json.dumps([event], separators=(",", ":")).encode()
    headers = signed_headers(secret=SECRET, url=url, body=body, timestamp_ms=int(time.time() * 1000))
    assert requests.post(url, data=body, headers={**headers, "Content-Type": "application/json"},
                         timeout=10).status_code == 200


def test_a_contact_created_qualified_by_a_rep_becomes_sql(inproc: System) -> None:
    # The rep creates the contact with Qualified already chosen (or picks it before the worker
    # has seen the creation). Applied in order: T1 prospect/new, then T6 qualified → sql/working.
    cid = inproc.rep_create_contact(email="q@ex.test", firstname="Q", contact_milestone="qualified")
    inproc.settle()
    props = inproc.contact(cid)
    assert (props["contact_status"], props["contact_milestone"]) == ("sql", "working")
    assert len(inproc.objects("deals")) == 1


def test_a_late_milestone_event_does_not_duplicate_the_reason_required_task(inproc: System) -> None:
    cid = inproc.rep_create_contact(email="n@ex.test", firstname="N", hubspotscore=150)
    inproc.settle()
    assert inproc.contact(cid)["contact_status"] == "mql"
    inproc.session.post(f"{inproc.base}/_sandbox/webhooks/pause", timeout=10).raise_for_status()
    inproc.rep_update(cid, contact_milestone="return_to_nurture")  # its webhook is late (HubSpot retries it)
    inproc.session.post(f"{inproc.base}/_sandbox/webhooks/resume", timeout=10).raise_for_status()
    inproc.hubspot_sets(cid, source="CALCULATED", hubspotscore=170)  # any other event for the contact
    inproc.settle()
    assert len(_tasks(inproc, cid, "reason_required")) == 1  # T8: held, one task
    _deliver_late(inproc, cid, "contact_milestone")
    inproc.settle()
    props = inproc.contact(cid)
    assert (props["contact_status"], props["contact_milestone"]) == ("mql", "return_to_nurture")
    assert len(_tasks(inproc, cid, "reason_required")) == 1


def test_a_retried_job_absorbed_by_another_keeps_the_jobs_it_had_absorbed(inproc: System) -> None:
    from rq.job import Job

    from worker import coalesce
    from worker.jobs import enqueue_payload

    inproc.session.post(f"{inproc.base}/_sandbox/webhooks/pause", timeout=10).raise_for_status()
    ids = [inproc.rep_create_contact(email=f"a{i}@ex.test", hubspotscore=150) for i in range(4)]
    inproc.session.post(f"{inproc.base}/_sandbox/webhooks/resume", timeout=10).raise_for_status()

    def payload(cid: str) -> dict[str, Any]:  # "look at this contact" (as reconcile enqueues it)
        return {"v": 1, "portal_id": 62515, "source": "test", "contacts": {cid: []}, "emails": {}, "companies": {}}

    a, b, c = (enqueue_payload(inproc.deps, payload(cid)) for cid in ids[:3])
    queue = inproc.queue
    # Job A starts (dequeued) and absorbs B and C, then its worker dies (SIGKILL) ...
    assert inproc.conn.lpop(queue.key) == a.id.encode()
    taken, _ = coalesce.absorb(inproc.deps, Job.fetch(a.id, connection=inproc.conn, serializer=queue.serializer),
                               queue, payload(ids[0]), 100)
    assert taken == [b.id, c.id]
    # ... a new delivery D is queued, then RQ retries A (abandoned) behind it.
    enqueue_payload(inproc.deps, payload(ids[3]))
    queue.enqueue_job(Job.fetch(a.id, connection=inproc.conn, serializer=queue.serializer))
    inproc.work()  # D runs first and absorbs A
    for cid in ids:
        assert inproc.contact(cid)["contact_status"] == "mql", f"contact {cid} was never processed"


def test_a_reps_change_overwritten_by_a_concurrent_write_is_restored(inproc: System,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 2b: the rep sets dead after the job's pre-write re-read and before its write, so the
    job writes mql/assigned (T3, decided from the older state) over it. The rep's webhook then
    finds the worker's value; the milestone's history shows the overwrite, and dead is restored:
    serialised, T3 came first and the rep's dead after it (mql/dead, and the unsubscribe)."""
    from worker import process

    cid = inproc.rep_create_contact(email="race@ex.test", firstname="R")
    inproc.settle()
    assert inproc.contact(cid)["contact_milestone"] == "new"
    real = process._changed_since_read
    raced: list[str] = []

    def reread_then_rep_acts(deps: Any, contacts: Any, ids: set[str]) -> set[str]:
        moved = real(deps, contacts, ids)
        if cid in ids and not raced:
            raced.append(cid)
            time.sleep(0.005)  # the rep's change is newer than the job's stamp, to the millisecond
            inproc.rep_update(cid, contact_milestone="dead")
        return moved

    monkeypatch.setattr(process, "_changed_since_read", reread_then_rep_acts)
    inproc.hubspot_sets(cid, source="CALCULATED", hubspotscore=150)
    inproc.settle()
    assert raced == [cid]
    props = inproc.contact(cid)
    assert (props["contact_status"], props["contact_milestone"]) == ("mql", "dead")
    assert props.get("hs_email_optout") == "true"  # T5: a person's dead unsubscribes


def test_a_job_that_dies_between_its_write_and_its_rollup_still_rolls_up(inproc: System,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding 10 (the soak): the job converting a contact to customer wrote the contact, then its
    worker was killed before the rollup. Its rerun found the contact customer already, decided
    "nothing to do", and the company stayed sql with no POC and nobody suppressed (spec §6)."""
    from rq.registry import ScheduledJobRegistry

    from worker import process
    from worker.jobclass import LifecycleJob

    company = inproc.rep_create_company(name="Crashy Inc")
    other = inproc.rep_create_contact(email="other@ex.test")
    inproc.rep_associate(other, company)
    cid = inproc.rep_create_contact(email="buyer@ex.test", contact_milestone="qualified")
    inproc.rep_associate(cid, company)
    inproc.settle()
    assert inproc.contact(cid)["contact_status"] == "sql"
    real, died = process._rollup, []

    def killed_after_the_write(*args: Any, **kwargs: Any) -> set[str]:
        if not died:
            died.append(True)
            raise RuntimeError("the worker was killed here")  # a failed job, as an abandoned one ends up
        return real(*args, **kwargs)

    monkeypatch.setattr(process, "_rollup", killed_after_the_write)
    inproc.rep_update(cid, contact_milestone="convert_to_customer")
    inproc.settle()
    assert died and inproc.contact(cid)["contact_status"] == "customer"  # written before the "kill"
    scheduled = ScheduledJobRegistry(queue=inproc.queue, job_class=LifecycleJob)
    retries = scheduled.get_job_ids()
    assert retries, "the job was meant to fail into an RQ retry"
    for job_id in retries:  # the retry runs now (RQ's scheduler, or the reaper, would enqueue it)
        job = LifecycleJob.fetch(job_id, connection=inproc.conn, serializer=inproc.queue.serializer)
        scheduled.remove(job)
        inproc.queue.enqueue_job(job)
    inproc.settle()
    assert {k: inproc.company(company).get(k) for k in ("account_status", "poc_contact_id")} == {
        "account_status": "customer", "poc_contact_id": cid}
    assert inproc.contact(other)["lead_gen_suppressed"] == "true"
    assert not inproc.conn.keys("lc:rollup-due:*"), "nothing is owed once the rollup is done"
