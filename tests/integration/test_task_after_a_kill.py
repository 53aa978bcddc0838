"""A task whose create reached HubSpot but whose job died before recording it in the ledger (a
killed worker) is not made twice by the rerun (chaos worker-killed): the key was marked intended
before the create, so the rerun reads the contact's tasks and finds it tagged. Real sandbox
(through the official SDK) and real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from rules.model import Action, ActionType, Contact, Decision
from sandbox.config import SandboxConfig
from sandbox.server import SandboxServer
from worker import effects
from worker.deps import Deps
from worker.hubspot import HubSpotGateway
from worker.settings import load_settings

TOKEN = "task-kill-token"
ENV = {"HUBSPOT_CLIENT_SECRET": "s", "HUBSPOT_ACCESS_TOKEN": TOKEN, "HUBSPOT_APP_ID": "4242"}


class Killed(BaseException):
    """The worker dies right after HubSpot accepted the create (SIGKILL: nothing runs after it)."""


class DiesAfterCreate(HubSpotGateway):
    dying = True

    def create_objects(self, object_type: str, inputs: Any) -> list[str]:
        ids = super().create_objects(object_type, inputs)
        if self.dying:
            raise Killed()
        return ids


@pytest.fixture()
def sandbox() -> Iterator[SandboxServer]:
    config = SandboxConfig(port=0, app_token=TOKEN, client_secret="s", app_id=4242, portal_id=62515,
                           rate_limit="100000/10s", search_rate_per_s=100000, seed="none")
    with SandboxServer(config) as server:
        yield server


def test_a_rerun_after_a_kill_does_not_make_the_task_twice(sandbox: SandboxServer, redis_conn: redis.Redis
                                                           ) -> None:
    gateway = DiesAfterCreate(access_token=TOKEN, base_url=sandbox.base_url)
    deps = Deps(settings=load_settings(environ=ENV), redis=redis_conn, hubspot=gateway,
                limiter=None)  # type: ignore[arg-type]
    gateway.dying = False
    cid = HubSpotGateway.create_objects(gateway, "contacts", [{"properties": {"email": "k@x.test"}}])[0]
    other = HubSpotGateway.create_objects(gateway, "contacts", [{"properties": {"email": "o@x.test"}}])[0]
    contacts = {c: Contact(c, {"email": f"{c}@x.test"}) for c in (cid, other)}
    decisions = {c: Decision({}, (Action(ActionType.CREATE_TASK, f"new_mql:{c}:once", {"kind": "new_mql"}),), "mql")
                 for c in (cid, other)}
    gateway.dying = True
    with pytest.raises(Killed):
        effects.perform(deps, {cid: contacts[cid]}, {cid: decisions[cid]}, {})
    assert effects.pending_keys(deps, [f"new_mql:{cid}:once"])  # the ledger does not know it was made
    gateway.dying = False
    report = effects.perform(deps, contacts, decisions, {})  # the rerun, with another contact's task too
    assert report.tasks_created == 1  # only the other contact's
    assert effects.pending_keys(deps, [f"new_mql:{cid}:once", f"new_mql:{other}:once"]) == set()
    tasks = gateway.associations("contacts", "tasks", [cid, other])
    assert len(tasks[cid]) == 1 and len(tasks[other]) == 1
