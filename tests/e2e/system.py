"""The whole system in one test process: sandbox, webhook server, Redis, RQ workers.

HubSpot's webhooks come from the sandbox (signed, batched) into the real Flask app on a
loopback port, which enqueues into a real Redis; `settle()` runs a real RQ SimpleWorker
until the queue is empty and the sandbox has nothing left to deliver, so the official SDK
writes back to the sandbox exactly as it would to HubSpot.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import redis
import requests
from rq import SimpleWorker
from rq.registry import FailedJobRegistry
from werkzeug.serving import make_server

from sandbox.config import SandboxConfig
from sandbox.server import SandboxServer
from webhooks import create_app
from worker.deps import make_deps, make_queue, set_deps
from worker.jobclass import LifecycleJob
from worker.settings import Settings, load_settings

SECRET = "e2e-client-secret"
APP_TOKEN = "e2e-app-token"
APP_ID = "4242"
REP = "user-7"


class System:
    """Start with `System(redis_url).start()`; act as reps with `rep_*`; then `settle()`."""

    def __init__(self, redis_url: str, *, seed: str = "demo-properties", rate_limit: str = "0",
                 **sandbox: Any) -> None:
        self.redis_url = redis_url
        self.conn = redis.Redis.from_url(redis_url)
        self.seed = seed
        self.rate_limit = rate_limit
        self.sandbox_options = sandbox
        self.session = requests.Session()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> System:
        env = {"HUBSPOT_CLIENT_SECRET": SECRET, "HUBSPOT_ACCESS_TOKEN": APP_TOKEN, "HUBSPOT_APP_ID": APP_ID,
               "REDIS_URL": self.redis_url}
        web_settings = load_settings(environ=env)
        self.web = make_server("127.0.0.1", 0, create_app(web_settings, redis=self.conn), threaded=True)
        self.web_url = f"http://127.0.0.1:{self.web.server_port}"
        threading.Thread(target=self.web.serve_forever, daemon=True).start()
        seed = "none" if self.seed == "demo-properties" else self.seed
        config = SandboxConfig(port=0, webhook_url=f"{self.web_url}/webhooks/hubspot",
                               email_webhook_url=f"{self.web_url}/webhooks/email-events", client_secret=SECRET,
                               app_id=int(APP_ID), app_token=APP_TOKEN, seed=seed, rate_limit=self.rate_limit,
                               webhook_retry_base_s=0.05, **self.sandbox_options)
        self.sandbox = SandboxServer(config)
        self.sandbox.start()
        self.base = self.sandbox.base_url
        self.settings: Settings = dataclasses.replace(web_settings, hubspot_base_url=self.base)
        self.deps = make_deps(self.settings, self.conn)
        set_deps(self.deps)
        self.queue = make_queue(self.settings, self.conn)
        if self.seed == "demo-properties":
            self.setup_portal()
        return self

    def stop(self) -> None:
        set_deps(None)
        self.sandbox.stop()
        self.web.shutdown()

    def setup_portal(self) -> None:
        from worker import setup_portal

        setup_portal.apply(setup_portal.plan(self.settings, self.deps.hubspot), self.deps.hubspot)

    # -- driving -----------------------------------------------------------------------------------
    def flush(self) -> None:
        self.session.post(f"{self.base}/_sandbox/webhooks/flush", timeout=30).raise_for_status()

    def work(self) -> None:
        SimpleWorker([self.queue], connection=self.conn, serializer=self.queue.serializer,
                     job_class=LifecycleJob).work(
            burst=True, logging_level="WARNING")

    def settle(self, rounds: int = 8) -> None:
        """Deliver every webhook and run workers until nothing is left to do."""
        for _ in range(rounds):
            self.flush()
            if self.queue.count == 0:
                time.sleep(0.1)  # a last batch may still be on its way
                self.flush()
                if self.queue.count == 0:
                    return
            self.work()
        raise AssertionError("the system did not settle")

    def failed_jobs(self) -> list[str]:
        """Ids of failed jobs; each one's error is printed, so a failing assertion shows why."""
        ids = FailedJobRegistry(queue=self.queue).get_job_ids()
        for job_id in ids:
            job = self.queue.fetch_job(job_id)
            print(f"failed job {job_id}: {job.latest_result().exc_string if job and job.latest_result() else '?'}")
        return ids

    # -- acting as people and HubSpot --------------------------------------------------------------
    def _api(self, method: str, path: str, token: str = REP, **kw: Any) -> Any:
        r = self.session.request(method, f"{self.base}{path}", headers={"Authorization": f"Bearer {token}"},
                                 timeout=30, **kw)
        assert r.status_code < 400, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def rep_create_contact(self, token: str = REP, **props: Any) -> str:
        body = {"properties": {k: str(v) for k, v in props.items()}}
        return str(self._api("POST", "/crm/v3/objects/contacts", token, json=body)["id"])

    def rep_create_company(self, token: str = REP, **props: Any) -> str:
        body = {"properties": {k: str(v) for k, v in props.items()}}
        return str(self._api("POST", "/crm/v3/objects/companies", token, json=body)["id"])

    def rep_associate(self, contact_id: str, company_id: str, token: str = REP) -> None:
        self._api("PUT", f"/crm/v4/objects/contacts/{contact_id}/associations/default/companies/{company_id}", token)

    def rep_update(self, contact_id: str, token: str = REP, **props: Any) -> None:
        body = {"properties": {k: str(v) for k, v in props.items()}}
        self._api("PATCH", f"/crm/v3/objects/contacts/{contact_id}", token, json=body)

    def hubspot_sets(self, contact_id: str, source: str = "SEQUENCES", **props: Any) -> None:
        """HubSpot itself (not a rep) changes properties, read-only ones included."""
        body = {"sourceType": source, "properties": {k: str(v) for k, v in props.items()}}
        r = self.session.patch(f"{self.base}/_sandbox/objects/contacts/{contact_id}", json=body, timeout=30)
        r.raise_for_status()

    def email_event(self, **record: Any) -> None:
        self._api("POST", "/_sandbox/email-events", json=record)

    # -- reading back ------------------------------------------------------------------------------
    def contact(self, contact_id: str) -> dict[str, Any]:
        props = ",".join(self.settings.policy.read_properties)
        data = self._api("GET", f"/crm/v3/objects/contacts/{contact_id}?properties={props}", APP_TOKEN)
        return dict(data["properties"])

    def company(self, company_id: str) -> dict[str, Any]:
        data = self._api("GET", f"/crm/v3/objects/companies/{company_id}?properties=account_status,poc_contact_id",
                         APP_TOKEN)
        return dict(data["properties"])

    def objects(self, object_type: str) -> list[dict[str, Any]]:
        r = self.session.get(f"{self.base}/_sandbox/objects/{object_type}", timeout=30)
        r.raise_for_status()
        data = r.json()
        return list(data.get("results", data) if isinstance(data, dict) else data)

    def stats(self) -> dict[str, Any]:
        return dict(self.session.get(f"{self.base}/_sandbox/stats", timeout=30).json())
