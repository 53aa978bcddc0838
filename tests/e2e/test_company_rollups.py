"""Company rollups under concurrency, and company-side association events (docs/chaos.md,
Findings 3 and 8), against the sandbox with the real job code (`process_inbox`) in this process.

The two jobs of a race are interleaved by hand: job B is paused between its read and its write
(where its side effects run) while job A runs to the end. That is the interleaving the chaos run
saw, made deterministic.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.system import System
from worker import effects, process, rollups
from worker.process import Inbox, process_inbox

PORTAL = 62515


def _status_edit(contact_id: str, value: str) -> dict[str, Any]:
    """A person's hand edit of contact_status (the worker's T16 reverts it)."""
    now = int(time.time() * 1000)
    return {"eventId": now % 10**9, "subscriptionId": 1, "portalId": PORTAL, "appId": 4242, "occurredAt": now,
            "subscriptionType": "contact.propertyChange", "attemptNumber": 0, "objectId": int(contact_id),
            "changeSource": "CRM_UI", "sourceId": "userId:7", "propertyName": "contact_status",
            "propertyValue": value}


def _payload(contacts: dict[str, list[dict[str, Any]]] | None = None,
             companies: dict[str, list[Any]] | None = None) -> dict[str, Any]:
    return {"v": 1, "portal_id": PORTAL, "source": "test", "contacts": contacts or {}, "emails": {},
            "companies": companies or {}}


@pytest.fixture()
def account(system: System) -> Iterator[tuple[System, str, str, str]]:
    """(system, company, edited, member): a company of two mql contacts. Webhooks are paused
    afterwards, so the test alone decides which job runs when."""
    company = system.rep_create_company(name="Race")
    edited = system.rep_create_contact(email="edited@ex.test", hubspotscore=120, vertical="marketplace")
    member = system.rep_create_contact(email="member@ex.test", hubspotscore=120, vertical="marketplace")
    system.rep_associate(edited, company)
    system.rep_associate(member, company)
    system.settle()
    assert system.company(company)["account_status"] == "mql"
    assert (system.contact(member)["lead_gen_suppressed"] or "false") == "false"
    system.session.post(f"{system.base}/_sandbox/webhooks/pause", timeout=10).raise_for_status()
    yield system, company, edited, member


def test_a_rollup_does_not_decide_from_its_job_s_earlier_read_of_the_flags(
        account: tuple[System, str, str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Finding 3, as seen in race_status_edit: a rep's hand edit makes `edited` customer for a moment.
    # Job B reads `edited` (customer) and `member` (not suppressed), and reverts `edited` (T16).
    # Meanwhile job A rolls the company up from the edit: customer account, `member` suppressed.
    # B then rolls up: the account is mql again, so `member` must be un-suppressed. Deciding from
    # B's earlier read of `member` (not suppressed) wrote nothing, and `member` stayed suppressed.
    system, company, edited, member = account
    system.rep_update(edited, contact_status="customer")
    requeued: list[dict[str, Any]] = []
    perform = effects.perform
    ran: list[str] = []

    def job_a_runs_while_job_b_works(*args: Any, **kwargs: Any) -> effects.EffectsReport:
        if not ran:  # B, between its read and its write
            ran.append("job A")
            process_inbox(system.deps, Inbox.of([_payload(companies={company: []})]), requeue=requeued.append)
            assert system.company(company)["account_status"] == "customer"  # A's rollup, from the edit
            assert system.contact(member)["lead_gen_suppressed"] == "true"
        return perform(*args, **kwargs)

    monkeypatch.setattr(effects, "perform", job_a_runs_while_job_b_works)
    job_b = _payload({edited: [_status_edit(edited, "customer")], member: []})
    process_inbox(system.deps, Inbox.of([job_b]), requeue=requeued.append)
    assert ran and requeued == []
    assert system.contact(edited)["contact_status"] == "mql"  # T16 reverted the hand edit
    assert system.company(company)["account_status"] == "mql"
    assert system.contact(member)["lead_gen_suppressed"] == "false"
    monkeypatch.setattr(effects, "perform", perform)
    system.session.post(f"{system.base}/_sandbox/webhooks/resume", timeout=10).raise_for_status()
    system.settle()
    assert system.company(company)["account_status"] == "mql"
    assert system.contact(member)["lead_gen_suppressed"] == "false"
    assert system.failed_jobs() == []


def test_a_company_another_job_is_rolling_up_is_requeued_as_a_companies_only_job(
        account: tuple[System, str, str, str]) -> None:
    # Finding 3 (b): one rollup per company at a time. Job B finds the company's rollup lock held
    # (job A is rolling it up) and hands the company back, to be rolled up once A is done.
    system, company, edited, member = account
    system.rep_update(edited, contact_status="customer")
    requeued: list[dict[str, Any]] = []
    with rollups.company_locks(system.deps) as job_a:
        assert job_a.acquire([company]) == ({company}, set())
        assert system.conn.exists(f"lc:lock:{PORTAL}:company:{company}")
        job_b = _payload({edited: [_status_edit(edited, "customer")]})
        result = process_inbox(system.deps, Inbox.of([job_b]), requeue=requeued.append)
        assert result["written"] == 1 and result["deferred"] == 0  # the contact itself is not held back
        assert system.contact(edited)["contact_status"] == "mql"
        assert system.company(company)["account_status"] == "mql"  # not rolled up by B meanwhile
    [later] = requeued
    assert later["companies"] == {company: []} and later["contacts"] == {} and later["emails"] == {}
    assert later["deferrals"] == 1 and later["source"] == "deferred"
    # While A held it, the company turned customer (A's rollup, from the rep's edit) ...
    system.deps.hubspot.update_objects("companies", {company: {"account_status": "customer"}})
    system.deps.hubspot.update_objects("contacts", {member: {"lead_gen_suppressed": "true"}})
    # ... and the requeued job, run after A, rolls it up from what HubSpot holds now.
    assert process_inbox(system.deps, Inbox.of([later]), requeue=requeued.append)["bad_events"] == 0
    assert len(requeued) == 1
    assert system.company(company)["account_status"] == "mql"
    assert system.contact(member)["lead_gen_suppressed"] == "false"
    assert system.conn.keys("lc:lock:*") == []


def test_company_side_association_events_are_processed_not_skipped(system: System,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Finding 8: HubSpot sends a company.associationChange (COMPANY_TO_CONTACT) with every
    # contact.associationChange; the endpoint files it under the contact, and the job must take it.
    company = system.rep_create_company(name="Assoc")
    cid = system.rep_create_contact(email="assoc@ex.test", hubspotscore=120, vertical="marketplace")
    system.settle()
    parsed: list[tuple[str, str]] = []
    parse = process.parse_trigger

    def spy(raw: Any, policy: Any) -> Any:
        try:
            trigger = parse(raw, policy)
        except Exception as exc:
            parsed.append((raw.get("subscriptionType"), f"skipped: {exc}"))
            raise
        parsed.append((raw.get("subscriptionType"), trigger.contact_id))
        return trigger

    monkeypatch.setattr(process, "parse_trigger", spy)
    system.rep_associate(cid, company)
    system.settle()
    assert ("company.associationChange", cid) in parsed and ("contact.associationChange", cid) in parsed, parsed
    assert all(outcome == cid for _, outcome in parsed), parsed
    assert system.company(company)["account_status"] == "mql"
    assert system.failed_jobs() == []


def test_a_big_job_reads_all_its_contacts_companies_while_it_decides_and_rolls_up_only_what_changed(
        system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    """A job of PREFETCH_COMPANIES_AT contacts or more reads every held contact's companies in one
    call started before deciding; only the contacts that need it are rolled up from that read."""
    moving = system.rep_create_contact(email="moving@ex.test", hubspotscore=10)
    still = system.rep_create_contact(email="still@ex.test", hubspotscore=10)
    first, second = system.rep_create_company(name="Moves"), system.rep_create_company(name="Stays")
    system.rep_associate(moving, first)
    system.rep_associate(still, second)
    system.settle()
    assert system.company(first)["account_status"] == system.company(second)["account_status"] == "prospect"
    system.session.post(f"{system.base}/_sandbox/webhooks/pause", timeout=10).raise_for_status()
    system.rep_update(moving, hubspotscore=150)  # crosses 100: mql, a rollup of `first`
    system.rep_update(still, hubspotscore=20)  # nothing to do

    def score(cid: str, value: str) -> dict[str, Any]:
        return {**_status_edit(cid, value), "propertyName": "hubspotscore", "changeSource": "CALCULATED",
                "sourceId": None}

    monkeypatch.setattr(process, "PREFETCH_COMPANIES_AT", 2)
    reads: list[list[str]] = []
    real = system.deps.hubspot.associations

    def associations(from_type: str, to_type: str, ids: Any) -> dict[str, list[str]]:
        reads.append(sorted(ids))
        return real(from_type, to_type, ids)

    monkeypatch.setattr(system.deps.hubspot, "associations", associations)
    rolled: list[tuple[set[str], set[str]]] = []
    real_recompute = rollups.recompute

    def recompute(deps: Any, contacts: Any, *args: Any, c2co: Any, **kwargs: Any) -> Any:
        rolled.append((set(contacts), set(c2co)))
        return real_recompute(deps, contacts, *args, c2co=c2co, **kwargs)

    monkeypatch.setattr(rollups, "recompute", recompute)
    process_inbox(system.deps, Inbox.of([_payload(contacts={moving: [score(moving, "150")],
                                                            still: [score(still, "20")]})]),
                  requeue=lambda _: pytest.fail("nothing to defer"))
    assert reads == [sorted([moving, still])]  # both held contacts, in the one prefetch, and no other read
    assert rolled == [({moving}, {moving})]  # the rollup takes only the contact that moved
    assert system.company(first)["account_status"] == "mql"
    assert system.company(second)["account_status"] == "prospect"
    monkeypatch.setattr(process, "PREFETCH_COMPANIES_AT", 3)  # a smaller job reads only what it needs
    reads.clear()
    system.rep_update(still, hubspotscore=130)
    process_inbox(system.deps, Inbox.of([_payload(contacts={moving: [score(moving, "150")],
                                                            still: [score(still, "130")]})]),
                  requeue=lambda _: pytest.fail("nothing to defer"))
    assert reads == [[still]]
    assert system.company(second)["account_status"] == "mql"
