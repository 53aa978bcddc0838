"""worker/effects.py owner picks against a real Redis: round-robin per vertical, remembered under the
action's key (a replay gets the same owner), the current owner skipped once, and exact under
concurrent workers (one script call per job: no pick is lost or doubled)."""

from __future__ import annotations

import threading
from collections import Counter

import redis

from rules.model import Action, ActionType, Contact, Decision
from worker import effects
from worker.deps import Deps
from worker.effects import OwnerPick, pick_owners
from worker.settings import load_settings

ENV = {"HUBSPOT_CLIENT_SECRET": "s", "HUBSPOT_ACCESS_TOKEN": "t", "HUBSPOT_APP_ID": "4242"}


def _deps(conn: redis.Redis) -> Deps:
    return Deps(settings=load_settings(environ=ENV), redis=conn, hubspot=None, limiter=None)  # type: ignore[arg-type]


def test_round_robin_per_vertical_remembered_and_avoiding_the_current_owner(redis_conn: redis.Redis) -> None:
    deps = _deps(redis_conn)
    picks = [OwnerPick("retail", "k1"), OwnerPick("retail", "k2"), OwnerPick("wholesale", "k3"),
             OwnerPick("retail", "k4"), OwnerPick("no-such-vertical", "k5"), OwnerPick(None, "k6")]
    assert pick_owners(deps, picks) == ["201", "202", "301", "201", "900", "900"]
    # the same keys again (a replay, a redelivery): the same owners, the counters untouched
    assert pick_owners(deps, picks) == ["201", "202", "301", "201", "900", "900"]
    assert pick_owners(deps, [OwnerPick("retail", "k7")]) == ["202"]
    # reassign away from the current owner: the next in turn is skipped when it is the current one
    assert pick_owners(deps, [OwnerPick("retail", "k8", avoid="201")]) == ["202"]
    assert pick_owners(deps, [OwnerPick(None, "k9", avoid="900")]) == ["900"]  # nobody else to pick
    assert pick_owners(deps, []) == []


def test_concurrent_jobs_share_the_round_robin_exactly(redis_conn: redis.Redis) -> None:
    deps = _deps(redis_conn)
    results: list[list[str]] = []

    def job(n: int) -> None:
        conn = redis.Redis(connection_pool=redis_conn.connection_pool)
        results.append(pick_owners(_deps(conn), [OwnerPick("marketplace", f"job{n}-{i}") for i in range(50)]))

    threads = [threading.Thread(target=job, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(o for r in results for o in r) == {"101": 100, "102": 100}
    assert deps.redis.get(f"lc:rr:{deps.portal_id}:marketplace") == b"200"


def test_assign_owners_sets_only_new_or_reassigned_owners(redis_conn: redis.Redis) -> None:
    deps = _deps(redis_conn)
    contacts = {"1": Contact("1", {}), "2": Contact("2", {"hubspot_owner_id": "201"}),
                "3": Contact("3", {"hubspot_owner_id": "201"})}

    def assign(cid: str, mode: str) -> Decision:
        return Decision(updates={}, reason="test", actions=(
            Action(ActionType.ASSIGN_OWNER, key=f"owner-{cid}", params={"vertical": "retail", "mode": mode}),))

    decisions = {"1": assign("1", "assign"), "2": assign("2", "assign"), "3": assign("3", "reassign")}
    updates: dict[str, dict[str, str]] = {}
    report = effects.EffectsReport()
    effects.assign_owners(deps, contacts, decisions, updates, report)
    assert updates == {"1": {"hubspot_owner_id": "201"}, "3": {"hubspot_owner_id": "202"}}
    assert report.owners_assigned == 2
