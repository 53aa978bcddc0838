"""Redelivery, concurrency and HubSpot failures, end to end with real Redis, RQ and the sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import pytest
from rq.job import Job

from tests.e2e.system import APP_ID, APP_TOKEN, SECRET, System
from worker.jobs import enqueue_payload


def _payload_of(system: System, contact_id: str, **event: Any) -> dict[str, Any]:
    raw = {"eventId": int(time.time() * 1000) % 10**9, "subscriptionId": 1, "portalId": 62515, "appId": 4242,
           "occurredAt": int(time.time() * 1000), "subscriptionType": "contact.propertyChange",
           "attemptNumber": 0, "objectId": int(contact_id), "changeSource": "CRM_UI", "sourceId": "userId:7"}
    raw.update(event)
    return {"v": 1, "portal_id": 62515, "source": "test", "contacts": {contact_id: [raw]}, "emails": {},
            "companies": {}}


def _faults(system: System, *rules: dict[str, Any]) -> None:
    system.session.post(f"{system.base}/_sandbox/faults", json={"rules": list(rules)}, timeout=10).raise_for_status()


def _clear_faults(system: System) -> None:
    system.session.delete(f"{system.base}/_sandbox/faults", timeout=10).raise_for_status()


def test_the_same_delivery_redelivered_creates_one_deal_and_one_task(system: System) -> None:
    cid = system.rep_create_contact(email="r@ex.test", hubspotscore=120)
    system.settle()
    log = system.session.get(f"{system.base}/_sandbox/webhooks/log", timeout=10).json()
    system.rep_update(cid, contact_milestone="sales_qualified")
    system.settle()
    payload = _payload_of(system, cid, propertyName="contact_milestone", propertyValue="sales_qualified")
    for _ in range(3):  # past the door's ledger: the worker itself must be idempotent
        enqueue_payload(system.deps, payload)
    system.work()
    assert len(system.objects("deals")) == 1
    assert len([t for t in system.objects("tasks") if "GMV" in t["properties"]["hs_task_subject"]]) == 1
    assert len([t for t in system.objects("tasks") if "New MQL" in t["properties"]["hs_task_subject"]]) == 1
    assert log  # the sandbox keeps a delivery log


def test_a_429_storm_is_retried_and_nothing_is_lost(system: System) -> None:
    ids = [system.rep_create_contact(email=f"s{i}@ex.test", hubspotscore=150) for i in range(5)]
    _faults(system, {"method": "POST", "path": "batch/(read|update)", "status": 429, "rate": 1.0, "count": 4})
    system.settle()
    for cid in ids:
        assert system.contact(cid)["contact_status"] == "mql"
    assert system.stats()["faults_served"] == 4
    assert system.failed_jobs() == []


def test_a_500_on_the_batch_write_fails_the_job_and_replay_finishes_it_without_duplicates(
        system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system.deps.hubspot, "_stop_s", 0.5)
    monkeypatch.setattr(system.deps.hubspot, "_max_attempts", 2)
    cid = system.rep_create_contact(email="f@ex.test", hubspotscore=150)
    system.flush()
    job_id = system.queue.job_ids[0]
    _faults(system, {"method": "POST", "path": "contacts/batch/update", "status": 500, "rate": 1.0})
    system.work()  # fails; RQ schedules its retry
    job = Job.fetch(job_id, connection=system.conn, serializer=system.queue.serializer)
    assert job.get_status() in ("scheduled", "failed")
    assert system.contact(cid)["contact_status"] in (None, "")
    _clear_faults(system)
    job.requeue() if job.get_status() == "failed" else system.queue.enqueue_job(job)
    system.settle()
    assert (system.contact(cid)["contact_status"], system.contact(cid)["contact_milestone"]) == ("mql", "assigned")
    assert len([t for t in system.objects("tasks") if "New MQL" in t["properties"]["hs_task_subject"]]) == 1


def test_an_unknown_or_deleted_contact_is_skipped_with_a_log_line(system: System) -> None:
    enqueue_payload(system.deps, _payload_of(system, "987654", propertyName="hubspotscore", propertyValue="150"))
    system.work()
    assert system.failed_jobs() == []
    cid = system.rep_create_contact(email="d@ex.test")
    system.settle()
    system.session.delete(f"{system.base}/crm/v3/objects/contacts/{cid}",
                          headers={"Authorization": "Bearer user-7"}, timeout=10).raise_for_status()
    system.settle()
    assert system.failed_jobs() == []


def test_a_merge_recomputes_the_survivor_and_its_companies(system: System) -> None:
    company = system.rep_create_company(name="Merged")
    a = system.rep_create_contact(email="m1@ex.test")
    b = system.rep_create_contact(email="m2@ex.test", hubspotscore=150)
    system.rep_associate(a, company)
    system.settle()
    r = system.session.post(f"{system.base}/crm/v3/objects/contacts/merge",
                            json={"primaryObjectId": a, "objectIdToMerge": b},
                            headers={"Authorization": "Bearer user-7"}, timeout=10)
    assert r.status_code < 400, r.text
    system.settle()
    survivor = str(r.json()["id"])
    assert system.contact(survivor)["contact_status"] == "mql"  # the merged score crossed 100
    assert system.company(company)["account_status"] == "mql"
    assert system.failed_jobs() == []


def test_two_worker_processes_on_the_same_contacts_lose_no_update(system: System) -> None:
    ids = [system.rep_create_contact(email=f"w{i}@ex.test", hubspotscore=120, vertical="retail") for i in range(6)]
    system.flush()
    for cid in ids:  # many jobs that all touch the same contacts
        for n in range(4):
            enqueue_payload(system.deps, _payload_of(system, cid, propertyName="hubspotscore",
                                                     propertyValue=str(120 + n), eventId=n))
    env = dict(os.environ, REDIS_URL=system.redis_url, HUBSPOT_BASE_URL=system.base, HUBSPOT_ACCESS_TOKEN=APP_TOKEN,
               HUBSPOT_CLIENT_SECRET=SECRET, HUBSPOT_APP_ID=APP_ID)
    cmd = [sys.executable, "-m", "worker.cli", "worker", "--burst"]
    workers = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    for w in workers:
        assert w.wait(120) == 0
    system.settle()
    owners = set()
    for cid in ids:
        props = system.contact(cid)
        assert (props["contact_status"], props["contact_milestone"]) == ("mql", "assigned")
        owners.add(props["hubspot_owner_id"])
    tasks = [t for t in system.objects("tasks") if "New MQL" in t["properties"]["hs_task_subject"]]
    assert len(tasks) == len(ids)  # one per contact, however many jobs and workers touched it
    assert owners <= {"201", "202"}
    assert system.failed_jobs() == []


def test_a_rep_change_made_while_the_job_works_is_not_overwritten(system: System,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from worker import effects

    cid = system.rep_create_contact(email="race@ex.test")
    system.settle()
    real_perform = effects.perform

    def perform_while_a_rep_acts(*args: Any, **kwargs: Any) -> Any:
        # the job decided T2 (received_campaigns) from what it read; the rep qualifies meanwhile
        system.rep_update(cid, contact_milestone="qualified")
        monkeypatch.setattr(effects, "perform", real_perform)
        return real_perform(*args, **kwargs)

    monkeypatch.setattr(effects, "perform", perform_while_a_rep_acts)
    system.email_event(type="DELIVERED", recipient="race@ex.test", emailCampaignId=5)
    system.settle()
    props = system.contact(cid)
    assert (props["contact_status"], props["contact_milestone"]) == ("sql", "working")  # the rep's change won
    assert system.failed_jobs() == []
