"""The naive baseline of the end-to-end benchmark: what a straightforward integration would do.

One RQ job per event (`bench.naive.handle_event(raw)`, JSON serializer, queue "naive"),
each on its own: a single-object GET of the contact (the properties the rules read; again
with property history when the rules ask for it), `rules.lifecycle.decide`, then one call
per thing to do: a single-object PATCH of the contact, tasks and deals created one by one
(the contact's deals read one by one first), the v4 unsubscribe-all, and for a status change
a rollup with a single-object association read, a company GET and a company PATCH (the
account status only goes up; no member reads). No batching, no coalescing, no effect ledger.

Every call goes through the project's gateway `_call` with the same Redis rate limiter, so
HubSpot (the sandbox) never answers 429 and the comparison is on calls, not on retries.

    python -m bench.naive worker      # a forking RQ worker on the "naive" queue
"""

from __future__ import annotations

import os
import sys
from typing import Any

import hubspot
import structlog
from hubspot.crm.contacts import models as m

from rules.lifecycle import decide
from rules.model import ActionType, Decision
from rules.triggers import parse_contact, parse_trigger
from worker import effects
from worker.deps import Deps, build_deps
from worker.errors import HubSpotNotFoundError
from worker.hubspot import _association_spec, _object_json

QUEUE = "naive"
JOB_FUNC = "bench.naive.handle_event"
log = structlog.get_logger(__name__)


class _Api:
    """The SDK's single-object APIs, built once per process (before the RQ worker forks)."""

    def __init__(self, deps: Deps) -> None:
        s = deps.settings
        client = hubspot.Client.create(access_token=s.access_token, host=s.hubspot_base_url,
                                       base_url=s.hubspot_base_url)
        crm = client.crm
        self.contacts = crm.contacts.basic_api
        self.companies = crm.companies.basic_api
        self.deals = crm.deals.basic_api
        self.tasks = crm.objects.tasks.basic_api
        self.assoc = crm.associations.v4.basic_api


_API: _Api | None = None


def api(deps: Deps) -> _Api:
    global _API
    if _API is None:
        _API = _Api(deps)
    return _API


def handle_event(raw: dict[str, Any]) -> dict[str, Any]:
    """Process ONE webhook-shaped event the naive way; returns what it did."""
    deps = build_deps()
    return Naive(deps, api(deps)).run(raw)


class Naive:
    def __init__(self, deps: Deps, sdk: _Api) -> None:
        self.deps, self.sdk, self.gw = deps, sdk, deps.hubspot
        self.policy = deps.settings.policy
        self.calls = 0
        self._companies: list[str] | None = None

    def call(self, endpoint: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.gw._call(endpoint, fn, *args, **kwargs)

    def run(self, raw: dict[str, Any]) -> dict[str, Any]:
        trigger = parse_trigger(raw, self.policy)
        cid = trigger.contact_id
        if trigger.by_self or cid is None:
            return {"skipped": "echo or no contact", "calls": 0}
        contact = self.get_contact(cid)
        if contact is None:
            return {"skipped": "contact not found", "calls": self.calls}
        now = self.deps.clock_ms()
        decision = decide(contact, [trigger], self.policy, now)
        if decision.needs_history:
            contact = self.get_contact(cid, history=True)
            if contact is None:
                return {"skipped": "contact not found", "calls": self.calls}
            decision = decide(contact, [trigger], self.policy, now)
        updates = {cid: dict(decision.updates)} if decision.updates else {}
        report = effects.EffectsReport()
        effects.assign_owners(self.deps, {cid: contact}, {cid: decision}, updates, report)  # Redis only
        props = updates.get(cid, {})
        kinds = {a.type for a in decision.actions}
        if ActionType.CREATE_DEAL in kinds or ActionType.UPDATE_DEAL_STAGE in kinds:
            self.deals(cid, contact, decision, props)
        for action in decision.actions:
            if action.type == ActionType.CREATE_TASK:
                self.create_task(cid, action.params, props.get(self.policy.contact.owner)
                                 or contact.get(self.policy.contact.owner))
            elif action.type == ActionType.UNSUBSCRIBE_ALL and contact.get(self.policy.contact.email):
                self.calls += 1
                self.gw.unsubscribe_all(contact.get(self.policy.contact.email))  # one v4 call, limiter-backed
        if props:
            self.call("contacts.update", self.sdk.contacts.update, cid, m.SimplePublicObjectInput(properties=props))
        status = props.get(self.policy.contact.status)
        if status and (ActionType.ROLLUP_COMPANIES in kinds or ActionType.SET_COMPANY_POC in kinds):
            self.rollup(cid, status, ActionType.SET_COMPANY_POC in kinds)
        return {"contact_id": cid, "written": bool(props), "rows": list(decision.rows), "calls": self.calls}

    # -- reads ---------------------------------------------------------------------------------------
    def get_contact(self, cid: str, *, history: bool = False) -> Any:
        p = self.policy
        try:
            obj = self.call("contacts.get", self.sdk.contacts.get_by_id, cid, properties=list(p.read_properties),
                            properties_with_history=list(p.history_properties) if history else None,
                            archived=False)
        except HubSpotNotFoundError:
            return None
        return parse_contact(_object_json(obj))

    def associated(self, from_type: str, oid: str, to_type: str) -> list[str]:
        page = self.call(f"associations.{from_type}.{to_type}.get", self.sdk.assoc.get_page, from_type, oid,
                         to_type, limit=500)
        return [str(r.to_object_id) for r in page.results or []]

    def companies(self, cid: str) -> list[str]:
        if self._companies is None:  # read once per job (a naive integration would not even cache this)
            self._companies = self.associated("contacts", cid, "companies")
        return self._companies

    # -- effects, one call each -------------------------------------------------------------------------
    def create_task(self, cid: str, params: Any, owner: str | None) -> None:
        hours = int(params.get("due_in_hours", "24") or 24)
        props = {"hs_timestamp": str(self.deps.clock_ms() + hours * 3_600_000),
                 "hs_task_subject": params.get("subject", "Lifecycle"),
                 "hs_task_body": str(params.get("body", "")), "hs_task_status": "NOT_STARTED",
                 "hs_task_type": "TODO"}
        if owner:
            props["hubspot_owner_id"] = owner
        body = m.SimplePublicObjectInputForCreate(properties=props, associations=[
            _association_spec({"to": cid, "type_id": effects.TASK_TO_CONTACT})])
        self.call("tasks.create", self.sdk.tasks.create, body)

    def deals(self, cid: str, contact: Any, decision: Decision, updates: dict[str, str]) -> None:
        s = self.deps.settings
        open_deals: list[tuple[str, str]] = []
        for deal_id in self.associated("contacts", cid, "deals"):
            deal = self.call("deals.get", self.sdk.deals.get_by_id, deal_id, properties=["pipeline", "dealstage"],
                             archived=False)
            stage = (deal.properties or {}).get("dealstage")
            if (deal.properties or {}).get("pipeline") == s.deal_pipeline and stage not in s.deal_closed_stages:
                open_deals.append((deal_id, stage or ""))
        for action in decision.actions:
            if action.type == ActionType.CREATE_DEAL and not open_deals:
                companies = self.companies(cid)
                name = ""
                if companies:
                    company = self.call("companies.get", self.sdk.companies.get_by_id, companies[0],
                                        properties=["name"], archived=False)
                    name = (company.properties or {}).get("name") or ""
                p = self.policy.contact
                props = {"dealname": f"{name} — {contact.get(p.first_name) or ''} {contact.get(p.last_name) or ''}",
                         "pipeline": s.deal_pipeline,
                         "dealstage": s.deal_stages.get(action.params.get("milestone", "working"), "")
                         or next(iter(s.deal_stages.values()))}
                if contact.get(p.gmv_forecast):
                    props["amount"] = str(contact.get(p.gmv_forecast))
                owner = updates.get(p.owner) or contact.get(p.owner)
                if owner:
                    props["hubspot_owner_id"] = owner
                assoc = [{"to": cid, "type_id": effects.DEAL_TO_CONTACT}]
                if companies:
                    assoc.append({"to": companies[0], "type_id": effects.DEAL_TO_COMPANY})
                self.call("deals.create", self.sdk.deals.create, m.SimplePublicObjectInputForCreate(
                    properties=props, associations=[_association_spec(a) for a in assoc]))
            elif action.type == ActionType.UPDATE_DEAL_STAGE:
                stage = action.params.get("stage") or ""
                for deal_id, current in open_deals:
                    if stage and current != stage:
                        self.call("deals.update", self.sdk.deals.update, deal_id,
                                  m.SimplePublicObjectInput(properties={"dealstage": stage}))

    def rollup(self, cid: str, status: str, poc: bool) -> None:
        co = self.policy.company
        for company_id in self.companies(cid):
            company = self.call("companies.get", self.sdk.companies.get_by_id, company_id,
                                properties=[co.account_status, co.poc_contact_id], archived=False)
            current = (company.properties or {}).get(co.account_status)
            changes = {}
            if self.policy.rank(status) > self.policy.rank(current):
                changes[co.account_status] = status
            if poc and (company.properties or {}).get(co.poc_contact_id) != cid:
                changes[co.poc_contact_id] = cid
            if changes:
                self.call("companies.update", self.sdk.companies.update, company_id,
                          m.SimplePublicObjectInput(properties=changes))


def _job_class() -> type:
    """Like worker.jobclass.LifecycleJob: this worker runs nothing but `handle_event` (no callbacks)."""
    from rq.job import Job

    class NaiveJob(Job):
        @property
        def func(self) -> Any:
            if self.func_name != JOB_FUNC or self.instance is not None:
                raise RuntimeError(f"job {self.id}: refusing to run {self.func_name!r} (not {JOB_FUNC})")
            return super().func

        @property
        def success_callback(self) -> Any:
            return None

        @property
        def failure_callback(self) -> Any:
            return None

        @property
        def stopped_callback(self) -> Any:
            return None

    return NaiveJob


def main(argv: list[str]) -> int:
    if argv[:1] != ["worker"]:
        print("usage: python -m bench.naive worker", file=sys.stderr)
        return 2
    import redis
    from rq import Queue, Worker
    from rq.serializers import JSONSerializer

    from worker.deps import make_deps, set_deps
    from worker.logs import configure_logging
    from worker.settings import load_settings

    configure_logging()
    settings = load_settings()
    conn = redis.Redis.from_url(settings.redis_url)
    deps = make_deps(settings, conn)
    set_deps(deps)
    api(deps)  # build the SDK objects before forking, as `lifecycle worker` does
    job_class = _job_class()
    queue = Queue(QUEUE, connection=conn, serializer=JSONSerializer, job_class=job_class)
    Worker([queue], connection=conn, serializer=JSONSerializer, job_class=job_class,
           name=f"naive-{os.getpid()}").work(with_scheduler=False, logging_level="WARNING")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
