"""Company rollups one at a time per company (docs/chaos.md, Finding 3): the rollup locks and the
requeue of a busy company, with real Redis locks and an in-memory HubSpot that counts calls."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pytest
import redis

from worker import rollups
from worker.deps import Deps
from worker.locks import ContactLocks
from worker.process import Inbox, process_inbox
from worker.settings import Settings, load_settings

ENV = {"HUBSPOT_CLIENT_SECRET": "s", "HUBSPOT_ACCESS_TOKEN": "t", "HUBSPOT_APP_ID": "4242"}


class FakeHubSpot:
    """Contacts, companies and company→contact links in memory; every call is recorded."""

    def __init__(self, contacts: Mapping[str, Mapping[str, str]], companies: Mapping[str, Mapping[str, str]],
                 links: Mapping[str, Iterable[str]]) -> None:
        self.store = {"contacts": {k: dict(v) for k, v in contacts.items()},
                      "companies": {k: dict(v) for k, v in companies.items()}}
        self.links = {co: list(members) for co, members in links.items()}
        self.calls: list[tuple[Any, ...]] = []
        self.on_company_read: list[Any] = []  # callbacks run when companies are read

    def associations(self, from_type: str, to_type: str, ids: Sequence[str]) -> dict[str, list[str]]:
        self.calls.append(("associations", f"{from_type}->{to_type}", sorted(ids)))
        if from_type == "companies":
            return {co: list(self.links[co]) for co in ids if co in self.links}
        found = {c: [co for co, members in self.links.items() if c in members] for c in ids}
        return {c: cos for c, cos in found.items() if cos}

    def read_objects(self, object_type: str, ids: Sequence[str], properties: Sequence[str],
                     history: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
        self.calls.append(("read", object_type, sorted(ids), tuple(properties)))
        if object_type == "companies":
            for callback in self.on_company_read:
                callback()
        store = self.store[object_type]
        return {i: {"id": i, "properties": {p: store[i].get(p) for p in properties}} for i in ids if i in store}

    def update_objects(self, object_type: str, updates: Mapping[str, Mapping[str, str]]) -> list[str]:
        self.calls.append(("update", object_type, {k: dict(v) for k, v in updates.items()}))
        for oid, props in updates.items():
            self.store[object_type][oid].update(props)
        return []

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == kind]


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(environ=ENV)


def _deps(settings: Settings, conn: redis.Redis, hubspot: FakeHubSpot) -> Deps:
    return Deps(settings=settings, redis=conn, hubspot=hubspot, limiter=None)  # type: ignore[arg-type]


def _two_accounts() -> FakeHubSpot:
    """Company 900 (contacts 1, 2) turns customer; company 901 (contacts 3, 4) stays mql."""
    contacts = {"1": {"contact_status": "customer"}, "2": {"contact_status": "mql"},
                "3": {"contact_status": "mql"}, "4": {"contact_status": "prospect", "lead_gen_suppressed": "true"}}
    companies = {"900": {"account_status": "mql"}, "901": {"account_status": "mql"}}
    return FakeHubSpot(contacts, companies, {"900": ["1", "2"], "901": ["3", "4"]})


def test_the_rollup_lock_is_a_contact_lock_under_the_company_prefix(settings: Settings,
                                                                   redis_conn: redis.Redis) -> None:
    deps = _deps(settings, redis_conn, _two_accounts())
    with rollups.company_locks(deps) as companies, ContactLocks(redis_conn, deps.portal_id) as contacts:
        assert companies.acquire(["7"]) == ({"7"}, set())
        assert contacts.acquire(["7"]) == ({"7"}, set())  # contact 7 and company 7 are different locks
        assert companies.key("7") == f"lc:lock:{deps.portal_id}:company:7"
        assert redis_conn.exists(f"lc:lock:{deps.portal_id}:company:7", f"lc:lock:{deps.portal_id}:7") == 2
        with rollups.company_locks(deps) as other:
            assert other.acquire(["7", "8"]) == ({"8"}, {"7"})
    assert redis_conn.keys("lc:lock:*") == []


def test_a_company_another_job_is_rolling_up_is_left_to_it_and_reported_busy(settings: Settings,
                                                                             redis_conn: redis.Redis) -> None:
    hubspot = _two_accounts()
    deps = _deps(settings, redis_conn, hubspot)
    with rollups.company_locks(deps) as holder:
        holder.acquire(["900"])
        report = rollups.recompute(deps, ["1", "3"])
        assert redis_conn.keys("lc:lock:*") == [holder.key("900").encode()]  # its own locks are released
    assert report.busy == {"900"} and report.companies == 2
    # 900 is neither read nor written: only 901's members are
    assert ("associations", "companies->contacts", ["901"]) in hubspot.calls
    assert [c[2] for c in hubspot.of("read")] == [["901"], ["3", "4"]]  # the company first: it may need no members
    assert hubspot.of("update") == [("update", "contacts", {"4": {"lead_gen_suppressed": "false"}})]
    assert hubspot.store["companies"]["900"]["account_status"] == "mql"
    # once the holder is done, a later rollup of 900 does it
    later = rollups.recompute(deps, [], ["900"])
    assert later.busy == set() and hubspot.store["companies"]["900"]["account_status"] == "customer"
    assert hubspot.store["contacts"]["2"]["lead_gen_suppressed"] == "true"


def test_members_are_read_afresh_in_one_batch_and_overlaid_with_what_the_job_wrote(
        settings: Settings, redis_conn: redis.Redis) -> None:
    hubspot = _two_accounts()
    hubspot.store["contacts"]["2"]["lead_gen_suppressed"] = "true"  # another job's rollup, after this job read 2
    deps = _deps(settings, redis_conn, hubspot)
    report = rollups.recompute(deps, ["1"], written={"1": {"contact_status": "sql"}})
    reads = hubspot.of("read")
    assert reads == [("read", "companies", ["900"], ("account_status", "poc_contact_id")),
                     ("read", "contacts", ["1", "2"], ("contact_status", "lead_gen_suppressed"))]
    # contact->company, company->contact, and for contact 2 (about to be un-suppressed) its other companies
    assert [c[1:] for c in hubspot.of("associations")] == [("contacts->companies", ["1"]),
                                                           ("companies->contacts", ["900"]),
                                                           ("contacts->companies", ["2"])]
    assert hubspot.store["companies"]["900"]["account_status"] == "sql"  # from what the job wrote
    assert hubspot.store["contacts"]["2"]["lead_gen_suppressed"] == "false"  # from the fresh read
    assert (report.companies_updated, report.contacts_updated, report.busy) == (1, 1, set())


def test_a_poc_set_by_this_job_reaches_a_busy_company_too(settings: Settings, redis_conn: redis.Redis) -> None:
    hubspot = _two_accounts()
    deps = _deps(settings, redis_conn, hubspot)
    with rollups.company_locks(deps) as holder:
        holder.acquire(["900"])
        report = rollups.recompute(deps, [], poc_contacts=["1"])
    assert report.busy == {"900"}
    # poc_contact_id depends on no member's state; the requeued companies-only job would not know it
    assert hubspot.of("update") == [("update", "companies", {"900": {"poc_contact_id": "1"}})]
    assert hubspot.store["companies"]["900"]["account_status"] == "mql"


def test_a_rollup_whose_lock_was_lost_before_the_write_does_not_write(settings: Settings,
                                                                     redis_conn: redis.Redis) -> None:
    hubspot = _two_accounts()
    deps = _deps(settings, redis_conn, hubspot)
    key = rollups.company_locks(deps).key("900")
    # The job stalls past its lock's TTL and another job takes the lock over while it reads.
    hubspot.on_company_read.append(lambda: redis_conn.set(key, "another-job"))
    report = rollups.recompute(deps, ["1", "3"])
    assert report.busy == {"900"}
    assert hubspot.of("update") == [("update", "contacts", {"4": {"lead_gen_suppressed": "false"}})]
    assert hubspot.store["companies"]["900"]["account_status"] == "mql"
    assert redis_conn.get(key) == b"another-job"  # the other job's lock is left alone


def test_a_busy_company_is_requeued_as_a_companies_only_payload(settings: Settings,
                                                                redis_conn: redis.Redis) -> None:
    hubspot = _two_accounts()
    deps = _deps(settings, redis_conn, hubspot)
    requeued: list[dict[str, Any]] = []
    inbox = Inbox.of([{"v": 1, "portal_id": deps.portal_id, "source": "deferred", "deferrals": 2,
                       "contacts": {}, "emails": {}, "companies": {"900": [], "901": []}}])
    with rollups.company_locks(deps) as holder:
        holder.acquire(["900"])
        result = process_inbox(deps, inbox, requeue=requeued.append)
    assert result["deferred"] == 0 and result["bad_events"] == 0
    assert requeued == [{"v": 1, "portal_id": deps.portal_id, "source": "deferred", "deferrals": 3,
                         "with_history": False, "contacts": {}, "emails": {}, "companies": {"900": []}}]
    assert hubspot.store["contacts"]["4"]["lead_gen_suppressed"] == "false"  # 901 was rolled up
    # The requeued payload is an ordinary job payload: run after the holder, it rolls 900 up.
    process_inbox(deps, Inbox.of(requeued), requeue=requeued.append)
    assert len(requeued) == 1 and hubspot.store["companies"]["900"]["account_status"] == "customer"
    assert redis_conn.keys("lc:lock:*") == []


def _members_read(hubspot: FakeHubSpot) -> list[tuple[Any, ...]]:
    return [c for c in hubspot.calls if c[:2] == ("associations", "companies->contacts")
            or (c[0] == "read" and c[1] == "contacts")]


def test_a_status_that_only_went_up_is_rolled_up_without_member_reads(settings: Settings,
                                                                      redis_conn: redis.Redis) -> None:
    hubspot = _two_accounts()
    deps = _deps(settings, redis_conn, hubspot)
    hubspot.store["contacts"]["4"]["contact_status"] = "sql"  # this job wrote it
    report = rollups.recompute(deps, ["4"], written={"4": {"contact_status": "sql"}}, c2co={"4": ["901"]},
                               status_changes={"4": ("prospect", "sql")})
    assert report.busy == set() and _members_read(hubspot) == []
    assert hubspot.of("associations") == []  # the caller's c2co is used
    assert hubspot.of("update") == [("update", "companies", {"901": {"account_status": "sql"}})]
    # Below the account's status before and after: nothing to write, still no member read.
    hubspot.calls.clear()
    rollups.recompute(deps, ["4"], written={"4": {"contact_status": "mql"}}, c2co={"4": ["901"]},
                      status_changes={"4": ("prospect", "mql")})
    assert _members_read(hubspot) == [] and hubspot.of("update") == []


@pytest.mark.parametrize(("contact", "company", "change", "why"), [
    ("3", "901", ("mql", "prospect"), "the account's status holder moves down"),
    ("2", "900", ("mql", "customer"), "customer (suppression) is involved"),
    ("4", "901", ("prospect", "unknown"), "a status the policy does not know"),
])
def test_a_rollup_that_depends_on_the_members_reads_them(settings: Settings, redis_conn: redis.Redis,
                                                         contact: str, company: str, change: tuple[str, str],
                                                         why: str) -> None:
    hubspot = _two_accounts()
    deps = _deps(settings, redis_conn, hubspot)
    hubspot.store["contacts"][contact]["contact_status"] = change[1]
    rollups.recompute(deps, [contact], written={contact: {"contact_status": change[1]}}, c2co={contact: [company]},
                      status_changes={contact: change})
    assert _members_read(hubspot), why


def test_an_association_change_or_a_requeued_company_takes_the_full_path(settings: Settings,
                                                                         redis_conn: redis.Redis) -> None:
    hubspot = _two_accounts()
    deps = _deps(settings, redis_conn, hubspot)
    # Contact 3 is here for an association change (not in status_changes): 901 is read in full,
    # even though contact 4's change alone would have allowed the quick path.
    rollups.recompute(deps, ["3", "4"], written={"4": {"contact_status": "sql"}},
                      c2co={"3": ["901"], "4": ["901"]}, status_changes={"4": ("prospect", "sql")})
    assert _members_read(hubspot)
    hubspot.calls.clear()
    rollups.recompute(deps, ["4"], ["901"], written={"4": {"contact_status": "sql"}}, c2co={"4": ["901"]},
                      status_changes={"4": ("prospect", "sql")})
    assert _members_read(hubspot)


def test_each_batch_is_reread_then_written_and_a_contact_changed_meanwhile_is_deferred(
        settings: Settings, redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pre-write re-read goes a batch at a time, each batch written right after its own
    re-read (its rollups recorded as due first); a contact a rep changed since the job read it is
    left out of its batch's write and deferred, and the other batches are written all the same."""
    from worker import process

    monkeypatch.setattr(process, "WRITE_BATCH", 2)
    names = {settings.policy.contact.status, settings.policy.contact.milestone, settings.policy.contact.reason}
    status = settings.policy.contact.status

    class Racing(FakeHubSpot):
        def read_objects(self, object_type: str, ids: Sequence[str], properties: Sequence[str],
                         history: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
            if set(properties) == names and "3" in ids:  # the re-read of 3's batch: a rep was quicker
                self.store["contacts"]["3"][settings.policy.contact.milestone] = "qualified"
            return super().read_objects(object_type, ids, properties, history)

        def update_objects(self, object_type: str, updates: Mapping[str, Mapping[str, str]]) -> list[str]:
            due = [bool(redis_conn.exists(f"lc:rollup-due:62515:{cid}")) for cid in updates]
            self.calls.append(("due at write", sorted(updates), due))
            return super().update_objects(object_type, updates)

    hubspot = Racing({c: {"email": f"{c}@x.test"} for c in "1234"}, {}, {})
    requeued: list[dict[str, Any]] = []
    report = process_inbox(_deps(settings, redis_conn, hubspot), Inbox.of([{"portal_id": 62515, "contacts": {
        c: [] for c in "1234"}}]), requeue=requeued.append)
    updates = [c for c in hubspot.calls if c[0] == "update" and c[1] == "contacts"]
    assert sorted(sorted(u[2]) for u in updates) == [["1", "2"], ["4"]]
    for batch in (["1", "2"], ["3", "4"]):
        reread = next(i for i, c in enumerate(hubspot.calls) if c[0] == "read" and c[2] == batch
                      and set(c[3]) == names)
        written = [i for i, c in enumerate(hubspot.calls) if c[0] == "update" and c[1] == "contacts"
                   and set(c[2]) <= set(batch)]
        assert len(written) == 1 and reread < written[0]
    assert all(all(c[2]) for c in hubspot.calls if c[0] == "due at write")  # recorded before each write
    assert [hubspot.store["contacts"][c].get(status) for c in "1234"] == ["prospect", "prospect", None, "prospect"]
    assert report["written"] == 3 and report["deferred"] == 1
    assert [sorted(p["contacts"]) for p in requeued] == [["3"]]
    assert redis_conn.keys("lc:rollup-due:*") == [] and redis_conn.keys("lc:lock:*") == []
