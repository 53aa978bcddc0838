"""worker/effects.py: deals, tasks and unsubscribes of one job go out side by side, and a failure in
one kind lets the others finish (and be recorded in the ledger) before the job fails. Real Redis
ledger, an in-memory HubSpot that records which calls were in flight together."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pytest
import redis

from rules.model import Action, ActionType, Contact, Decision
from worker import effects
from worker.deps import Deps
from worker.errors import HubSpotPermanentError
from worker.settings import load_settings

ENV = {"HUBSPOT_CLIENT_SECRET": "s", "HUBSPOT_ACCESS_TOKEN": "t", "HUBSPOT_APP_ID": "4242"}


class SlowHubSpot:
    def __init__(self, fail: str | None = None) -> None:
        self.fail, self.lock = fail, threading.Lock()
        self.in_flight, self.most, self.done = 0, 0, []

    def _visit(self, what: str) -> None:
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        time.sleep(0.1)  # HubSpot's latency
        with self.lock:
            self.in_flight -= 1
            self.done.append(what)
        if what == self.fail:
            raise HubSpotPermanentError(f"{what}: HubSpot answered 400", status=400)

    def associations(self, from_type: str, to_type: str, ids: Sequence[str]) -> dict[str, list[str]]:
        self._visit(f"associations {to_type}")
        return {i: [] for i in ids}

    def read_objects(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {}

    def create_objects(self, object_type: str, inputs: Sequence[Mapping[str, Any]]) -> list[str]:
        self._visit(f"create {object_type}")
        return [str(i) for i in range(len(inputs))]

    def unsubscribe_all_many(self, emails: Iterable[str]) -> None:
        self._visit("unsubscribe")


def _job() -> tuple[dict[str, Contact], dict[str, Decision]]:
    contacts = {c: Contact(c, {"email": f"{c}@x.test", "hubspot_owner_id": "o1"}) for c in ("1", "2", "3")}
    decisions = {
        "1": Decision({}, (Action(ActionType.CREATE_DEAL, "deal:1", {"milestone": "working"}),), "sql"),
        "2": Decision({}, (Action(ActionType.CREATE_TASK, "task:2", {"kind": "new_mql"}),), "mql"),
        "3": Decision({}, (Action(ActionType.UNSUBSCRIBE_ALL, "unsub:3"),), "dead"),
    }
    return contacts, decisions


@pytest.mark.parametrize("fail", [None, "create tasks"])
def test_deals_tasks_and_unsubscribes_go_out_side_by_side(redis_conn: redis.Redis, fail: str | None) -> None:
    hubspot = SlowHubSpot(fail)
    deps = Deps(settings=load_settings(environ=ENV), redis=redis_conn, hubspot=hubspot,  # type: ignore[arg-type]
                limiter=None)  # type: ignore[arg-type]
    contacts, decisions = _job()
    if fail:
        with pytest.raises(HubSpotPermanentError):
            effects.perform(deps, contacts, decisions, {}, c2co={"1": []})
    else:
        report = effects.perform(deps, contacts, decisions, {}, c2co={"1": []})
        assert (report.deals_created, report.tasks_created, report.unsubscribed) == (1, 1, 1)
    assert hubspot.most >= 2  # not one kind after the other
    assert {"create deals", "create tasks", "unsubscribe"} <= set(hubspot.done)  # all finished
    # The ledger records what succeeded, so a retry redoes only the failed kind.
    assert effects.pending_keys(deps, ["task:2", "unsub:3"]) == ({"task:2"} if fail else set())
