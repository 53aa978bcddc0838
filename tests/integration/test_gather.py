"""worker/gather.py: email events resolved from the contacts the job reads for their own events,
only the other addresses searched; every contact locked before it is read. Real Redis locks, an
in-memory HubSpot that records its calls."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import redis

from rules.triggers import parse_trigger
from worker.deps import Deps
from worker.gather import gather
from worker.locks import ContactLocks
from worker.settings import load_settings

ENV = {"HUBSPOT_CLIENT_SECRET": "s", "HUBSPOT_ACCESS_TOKEN": "t", "HUBSPOT_APP_ID": "4242"}
CONTACTS = {"1": "one@x.test", "2": "two@x.test", "3": "three@x.test"}


class Directory:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.locked_when_read: list[bool] = []
        self.conn: redis.Redis | None = None

    def read_objects(self, object_type: str, ids: Sequence[str], properties: Sequence[str],
                     history: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
        self.calls.append(("read", sorted(ids)))
        assert self.conn is not None
        self.locked_when_read += [bool(self.conn.exists(f"lc:lock:62515:{i}")) for i in ids]
        return {i: {"id": i, "properties": {"email": CONTACTS[i].upper()}} for i in ids if i in CONTACTS}

    def find_contacts_by_email(self, emails: Iterable[str]) -> dict[str, str]:
        wanted = sorted(e.lower() for e in emails)
        self.calls.append(("search", wanted))
        return {e: cid for cid, e in CONTACTS.items() if e in wanted}


def _score(cid: str) -> dict[str, Any]:
    return {"subscriptionType": "contact.propertyChange", "objectId": int(cid), "propertyName": "hubspotscore",
            "propertyValue": "50", "occurredAt": 1_700_000_000_000, "changeSource": "CALCULATED", "eventId": 1,
            "portalId": 62515, "subscriptionId": 1, "attemptNumber": 0}


def _idle_events(settings: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Events that ask for nothing: an echo of the app's own write (contact 2), a deletion (3)."""
    echo = dict(_score("2"), changeSource="INTEGRATION", sourceId=settings.policy.app_id)
    deleted = {"subscriptionType": "contact.deletion", "objectId": 3, "occurredAt": 1_700_000_000_000,
               "eventId": 2, "portalId": 62515, "subscriptionId": 1}
    return echo, deleted


def _delivered(email: str) -> dict[str, Any]:
    return {"type": "DELIVERED", "recipient": email, "created": 1_700_000_000_001, "id": f"ev-{email}"}


def test_only_addresses_of_contacts_not_read_are_searched_and_all_are_locked_before_read(
        redis_conn: redis.Redis) -> None:
    settings = load_settings(environ=ENV)
    hubspot = Directory()
    hubspot.conn = redis_conn
    deps = Deps(settings=settings, redis=redis_conn, hubspot=hubspot, limiter=None)  # type: ignore[arg-type]
    emails = {e: [_delivered(e)] for e in ("one@x.test", "two@x.test", "three@x.test", "nobody@x.test")}

    def parse(raws: list[dict[str, Any]]) -> list[Any]:
        return [parse_trigger(r, settings.policy) for r in raws]

    with ContactLocks(redis_conn, 62515) as other, ContactLocks(redis_conn, 62515) as locks:
        other.acquire(["3"])  # another job is working on contact 3
        found = gather(deps, {"1": [_score("1")]}, emails, parse, locks)
    # contact 1 was read for its own event and its (upper-case) email resolves one@x.test
    assert hubspot.calls == [("read", ["1"]), ("search", ["nobody@x.test", "three@x.test", "two@x.test"]),
                             ("read", ["2"])]
    assert all(hubspot.locked_when_read)
    assert found.email_of == {"one@x.test": "1", "two@x.test": "2", "three@x.test": "3"}
    assert (found.locked, found.busy, found.unresolved) == ({"1", "2"}, {"3"}, 1)
    assert sorted(found.rows) == ["1", "2"]
    assert [t.kind.value for t in found.triggers["1"]] == ["property_changed", "email_event"]
    assert len(found.triggers["3"]) == 1  # kept for the deferral, with its address resolved


def test_contacts_are_locked_before_their_events_are_parsed_and_idle_ones_let_go(redis_conn: redis.Redis) -> None:
    """A burst's job parses thousands of events: a job that starts meanwhile must not take its
    contacts' locks first. Contacts with nothing to do (only the app's own echoes, deleted) are
    not kept locked."""
    settings = load_settings(environ=ENV)
    hubspot = Directory()
    hubspot.conn = redis_conn
    deps = Deps(settings=settings, redis=redis_conn, hubspot=hubspot, limiter=None)  # type: ignore[arg-type]
    echo, deleted = _idle_events(settings)
    locked_at_parse: list[bool] = []

    def parse(raws: list[dict[str, Any]]) -> list[Any]:
        locked_at_parse.extend(bool(redis_conn.exists(f"lc:lock:62515:{r['objectId']}")) for r in raws)
        triggers = [parse_trigger(r, settings.policy) for r in raws]
        return [t for t in triggers if not t.by_self]

    with ContactLocks(redis_conn, 62515) as locks:
        found = gather(deps, {"1": [_score("1")], "2": [echo], "3": [deleted]}, {}, parse, locks)
        assert locked_at_parse == [True, True, True]
        assert (found.locked, found.gone, locks.held) == ({"1"}, {"3"}, {"1"})
        assert [bool(redis_conn.exists(f"lc:lock:62515:{c}")) for c in "123"] == [True, False, False]
    assert hubspot.calls == [("read", ["1"])]


def test_a_big_job_reads_its_contacts_while_it_parses_their_events(redis_conn: redis.Redis, monkeypatch: Any) -> None:
    """At READ_AHEAD_AT contacts the read runs while the events are parsed (a parse that waits for
    the read would time out otherwise), still under the locks; contacts with nothing to do are
    read but dropped and let go, and nothing is read twice."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Event

    from worker import gather as gather_module

    monkeypatch.setattr(gather_module, "READ_AHEAD_AT", 3)
    settings = load_settings(environ=ENV)
    hubspot = Directory()
    hubspot.conn = redis_conn
    read_started = Event()
    plain_read = hubspot.read_objects

    def read_objects(*args: Any, **kwargs: Any) -> dict[str, dict[str, Any]]:
        read_started.set()
        return plain_read(*args, **kwargs)

    hubspot.read_objects = read_objects  # type: ignore[method-assign]
    deps = Deps(settings=settings, redis=redis_conn, hubspot=hubspot, limiter=None)  # type: ignore[arg-type]
    echo, deleted = _idle_events(settings)
    read_during_parse: list[bool] = []

    def parse(raws: list[dict[str, Any]]) -> list[Any]:
        read_during_parse.append(read_started.wait(5))
        return [t for t in (parse_trigger(r, settings.policy) for r in raws) if not t.by_self]

    with ContactLocks(redis_conn, 62515) as locks, ThreadPoolExecutor(1) as pool:
        found = gather(deps, {"1": [_score("1")], "2": [echo], "3": [deleted]},
                       {"one@x.test": [_delivered("one@x.test")]}, parse, locks, pool=pool)
        assert read_during_parse[0] is True
        assert (found.locked, found.gone, locks.held, sorted(found.rows)) == ({"1"}, {"3"}, {"1"}, ["1"])
        assert found.email_of == {"one@x.test": "1"}
    assert hubspot.calls == [("read", ["1", "2", "3"])]
    assert all(hubspot.locked_when_read)


def test_a_small_job_does_not_read_ahead(redis_conn: redis.Redis) -> None:
    settings = load_settings(environ=ENV)
    hubspot = Directory()
    hubspot.conn = redis_conn
    deps = Deps(settings=settings, redis=redis_conn, hubspot=hubspot, limiter=None)  # type: ignore[arg-type]
    from concurrent.futures import ThreadPoolExecutor

    def parse(raws: list[dict[str, Any]]) -> list[Any]:
        assert hubspot.calls == []  # nothing read before its events are parsed
        return [parse_trigger(r, settings.policy) for r in raws]

    with ContactLocks(redis_conn, 62515) as locks, ThreadPoolExecutor(1) as pool:
        gather(deps, {"1": [_score("1")], "2": [_score("2")]}, {}, parse, locks, pool=pool)
    assert hubspot.calls == [("read", ["1", "2"])]
