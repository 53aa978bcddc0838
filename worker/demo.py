"""`lifecycle demo`: the whole system on the embedded default, playing a realistic day.

Starts the local HubSpot sandbox (seeded demo portal), the webhook server under gunicorn
and RQ workers — the Procfile's processes — against REDIS_URL (database 12 by default,
emptied first), sets up the portal, then acts as reps and as HubSpot's email tool through
the sandbox's API, waiting after each scene until the worker has caught up. It ends with
the contacts by status/milestone, the company rollups, the API calls made and the failed
or replayed jobs, and shuts everything down (Ctrl-C too).
"""

from __future__ import annotations

import random
import secrets
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse, urlunparse

import click
import redis
import requests
from rich.console import Console
from rich.table import Table
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from worker.procs import Children, wait_http

console = Console(highlight=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _with_db(url: str, db: int) -> str:
    parts = urlparse(url)
    return urlunparse(parts._replace(path=f"/{db}"))


class Portal:
    """The sandbox's API, as reps (user tokens), as HubSpot itself, and as the email tool."""

    def __init__(self, base: str, app_token: str) -> None:
        self.base = base
        self.app_token = app_token
        self.http = requests.Session()

    def call(self, method: str, path: str, token: str = "user-7", **kw: Any) -> Any:
        r = self.http.request(method, self.base + path, headers={"Authorization": f"Bearer {token}"}, timeout=30, **kw)
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:200]}")
        return r.json() if r.content else None

    def create_contact(self, token: str = "user-3", **props: Any) -> str:
        body = {"properties": {k: str(v) for k, v in props.items()}}
        return str(self.call("POST", "/crm/v3/objects/contacts", token, json=body)["id"])

    def create_company(self, name: str) -> str:
        return str(self.call("POST", "/crm/v3/objects/companies", "user-3", json={"properties": {"name": name}})["id"])

    def associate(self, contact: str, company: str) -> None:
        self.call("PUT", f"/crm/v4/objects/contacts/{contact}/associations/default/companies/{company}", "user-3")

    def rep(self, contact: str, token: str = "user-7", **props: Any) -> None:
        body = {"properties": {k: str(v) for k, v in props.items()}}
        self.call("PATCH", f"/crm/v3/objects/contacts/{contact}", token, json=body)

    def hubspot(self, contact: str, source: str = "CALCULATED", **props: Any) -> None:
        body = {"sourceType": source, "properties": {k: str(v) for k, v in props.items()}}
        self.http.patch(f"{self.base}/_sandbox/objects/contacts/{contact}", json=body, timeout=30).raise_for_status()

    def email(self, **record: Any) -> None:
        self.http.post(f"{self.base}/_sandbox/email-events", json=record, timeout=30).raise_for_status()

    def faults(self, rules: list[dict[str, Any]] | None) -> None:
        if rules:
            self.http.post(f"{self.base}/_sandbox/faults", json={"rules": rules}, timeout=10).raise_for_status()
        else:
            self.http.delete(f"{self.base}/_sandbox/faults", timeout=10).raise_for_status()

    def control(self, path: str) -> Any:
        return self.http.get(f"{self.base}/_sandbox/{path}", timeout=30).json()

    def get(self, object_type: str, oid: str) -> dict[str, Any]:
        """Read an object through the sandbox's control API (not rate limited, not counted)."""
        r = self.http.get(f"{self.base}/_sandbox/objects/{object_type}/{oid}", timeout=30)
        r.raise_for_status()
        return dict(r.json()["properties"])


class Day:
    """The scenes of a day in the portal, each followed by waiting for the worker."""

    def __init__(self, portal: Portal, settle: Callable[[], None], rng: random.Random) -> None:
        self.p = portal
        self.settle = settle
        self.rng = rng
        self.contacts: list[str] = []
        self.companies: list[str] = []
        self.emails: dict[str, str] = {}

    def scene(self, clock: str, text: str, act: Callable[[], None]) -> None:
        started = time.monotonic()
        with console.status(f"[bold]{clock}[/] {text}"):
            act()
            self.settle()
        console.print(f"[green]✓[/] [bold]{clock}[/] {text} [dim]({time.monotonic() - started:.1f} s)[/]")

    def play(self) -> None:
        verticals = ["marketplace", "retail", "wholesale"]

        def import_contacts() -> None:
            for c in range(6):
                self.companies.append(self.p.create_company(f"Tradeshow Co {c + 1}"))
            for i in range(24):
                email = f"lead{i + 1}@tradeshow{i % 6 + 1}.example"
                props: dict[str, Any] = {"email": email, "firstname": f"Lead{i + 1}", "lastname": "Demo",
                                         "vertical": verticals[i % 3], "hubspotscore": self.rng.randint(10, 80)}
                if i % 4 == 0:
                    props["gmv_forecast"] = self.rng.choice([25000, 50000, 120000])
                cid = self.p.create_contact(**props)
                self.contacts.append(cid)
                self.emails[cid] = email
                self.p.associate(cid, self.companies[i % 6])

        self.scene("08:00", "Marketing imports 24 trade-show contacts into 6 companies", import_contacts)
        self.scene("09:00", "A lead-generation campaign is delivered to 18 of them", lambda: [
            self.p.email(type="DELIVERED", recipient=self.emails[c], emailCampaignId=9001) for c in self.contacts[:18]])
        self.scene("10:00", "Lead scores cross 100 for 10 contacts (MQL, owner, task)", lambda: [
            self.p.hubspot(c, hubspotscore=self.rng.randint(100, 140)) for c in self.contacts[:10]])
        self.scene("11:00", "Reps acknowledge 4 MQLs (In Review)", lambda: [
            self.p.rep(c, contact_milestone="in_review") for c in self.contacts[:4]])
        self.scene("11:30", "A rep sends an MQL to another vertical (Reassign)", lambda: self.p.rep(
            self.contacts[4], contact_milestone="reassign", vertical="wholesale"))
        self.scene("12:00", "Reps qualify 3 MQLs and cold-call-qualify 1 prospect (SQL, deals)", lambda: (
            [self.p.rep(c, contact_milestone="sales_qualified") for c in self.contacts[:3]],
            self.p.rep(self.contacts[20], contact_milestone="qualified")))
        self.scene("13:00", "Rejections: Unqualified with a reason, Return to Nurture without one", lambda: (
            self.p.rep(self.contacts[5], contact_milestone="unqualified", milestone_reason="never_a_good_fit"),
            self.p.rep(self.contacts[2], contact_milestone="return_to_nurture")))
        self.scene("13:30", "The rep adds the missing nurture reason (SQL → SRL)", lambda: self.p.rep(
            self.contacts[2], milestone_reason="no_budget_now"))
        self.scene("14:00", "Two hard bounces, an unsubscribe, and a rep marks a contact dead", lambda: (
            self.p.email(type="BOUNCE", category="HARD_BOUNCE", recipient=self.emails[self.contacts[21]]),
            self.p.email(type="BOUNCE", category="HARD_BOUNCE", recipient=self.emails[self.contacts[6]]),
            self.p.email(type="STATUSCHANGE", recipient=self.emails[self.contacts[22]],
                         subscriptions=[{"status": "UNSUBSCRIBED"}]),
            self.p.rep(self.contacts[7], contact_milestone="dead")))
        self.scene("15:00", "Contract negotiations, then a signed contract (Customer, POC, rollup)", lambda: (
            self.p.rep(self.contacts[1], contact_milestone="contract_negotiations"),
            self.p.rep(self.contacts[0], contact_milestone="contract_negotiations"),
            self.p.rep(self.contacts[0], contact_milestone="convert_to_customer")))
        self.scene("16:00", "Someone edits the locked status by hand; someone picks a milestone not allowed", lambda: (
            self.p.rep(self.contacts[8], contact_status="customer"),
            self.p.rep(self.contacts[9], contact_milestone="working")))

        def outage() -> None:
            self.p.faults([{"method": "POST", "path": "contacts/batch/update", "status": 503, "rate": 1.0,
                            "count": 3}])
            for c in self.contacts[10:14]:
                self.p.hubspot(c, hubspotscore=self.rng.randint(100, 130))

        self.scene("16:30", "HubSpot has a short outage (503s) while 4 more scores cross 100", outage)
        self.p.faults(None)


def _settler(conn: redis.Redis, queue: str, portal: Portal, timeout_s: float = 90.0) -> Callable[[], None]:
    def settle() -> None:
        deadline = time.monotonic() + timeout_s
        quiet = 0
        while time.monotonic() < deadline:
            portal.http.post(f"{portal.base}/_sandbox/webhooks/flush", timeout=30)
            busy = (conn.llen(f"rq:queue:{queue}") + StartedJobRegistry(queue, connection=conn).count
                    + ScheduledJobRegistry(queue, connection=conn).count)
            pending = portal.control("stats")["webhooks"]["pending"]
            quiet = quiet + 1 if not busy and not pending else 0
            if quiet >= 3:
                return
            time.sleep(0.2)
        raise RuntimeError("the worker did not catch up in time; see the logs")
    return settle


def _report(portal: Portal, day: Day, conn: redis.Redis, queue: str, started: float) -> None:
    states = Counter()
    for cid in day.contacts:
        props = portal.get("contacts", cid)
        states[(props.get("contact_status") or "-", props.get("contact_milestone") or "-")] += 1
    table = Table(title="Contacts of the day by status / milestone")
    table.add_column("status")
    table.add_column("milestone")
    table.add_column("contacts", justify="right")
    for (status, milestone), n in sorted(states.items()):
        table.add_row(status, milestone, str(n))
    console.print(table)
    companies = Table(title="Company rollups")
    for col in ("company", "account_status", "POC contact"):
        companies.add_column(col)
    for co in day.companies:
        props = portal.get("companies", co)
        companies.add_row(props.get("name") or co, props.get("account_status") or "-",
                          props.get("poc_contact_id") or "-")
    console.print(companies)
    stats = portal.control("stats")
    calls = Table(title=f"HubSpot API calls (worker and reps): {stats['total_calls']} (429s: {stats['rate_limited']}, "
                        f"faults served: {stats['faults_served']})")
    calls.add_column("endpoint")
    calls.add_column("calls", justify="right")
    for endpoint, n in sorted(stats["calls"].items(), key=lambda kv: -kv[1])[:12]:
        calls.add_row(endpoint, str(n))
    console.print(calls)
    failed = FailedJobRegistry(queue, connection=conn).count
    replayed = int(conn.get("lc:demo:replayed") or 0)
    console.print(f"Failed jobs left: {failed}; replayed: {replayed}; webhooks delivered: "
                  f"{stats['webhooks']['delivered']}; demo took {time.monotonic() - started:.0f} s")


@click.command("demo")
@click.option("--redis-url", envvar="REDIS_URL", default="redis://127.0.0.1:6379/0", show_default=True)
@click.option("--redis-db", type=int, default=12, show_default=True, help="Database the demo uses (emptied first).")
@click.option("--workers", type=click.IntRange(1, 8), default=2, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True, help="Random seed of the day's story.")
@click.option("--keep-logs", is_flag=True, help="Keep the processes' logs in a temp folder and print it.")
def demo(redis_url: str, redis_db: int, workers: int, seed: int, keep_logs: bool) -> None:
    """Run the whole system on a local HubSpot sandbox and play a day of sales work."""
    from tools.redis_runtime import answers

    started = time.monotonic()
    url = _with_db(redis_url, redis_db)
    if not answers(url):
        raise click.ClickException(f"no Redis answers at {redis_url}; `make demo` starts one for you")
    conn = redis.Redis.from_url(url)
    conn.flushdb()
    sandbox_port, web_port = _free_port(), _free_port()
    base, web = f"http://127.0.0.1:{sandbox_port}", f"http://127.0.0.1:{web_port}"
    app_token = secrets.token_hex(16)  # a fresh private-app token and secret for this run
    env = {**__import__("os").environ, "REDIS_URL": url, "HUBSPOT_BASE_URL": base, "HUBSPOT_ACCESS_TOKEN": app_token,
           "HUBSPOT_CLIENT_SECRET": secrets.token_hex(16), "HUBSPOT_APP_ID": "4242"}
    logs = tempfile.mkdtemp(prefix="lifecycle-demo-") if keep_logs else None
    children = Children(env=env, log_dir=logs)
    try:
        with console.status("Starting the sandbox, the webhook server and the workers…"):
            sandbox = children.start("sandbox", "sandbox", "--port", str(sandbox_port), "--seed", "demo",
                                     "--webhook-url", f"{web}/webhooks/hubspot", "--email-webhook-url",
                                     f"{web}/webhooks/email-events", "--rate-limit", "100/10s")
            web_proc = children.start("web", "serve", "--host", "127.0.0.1", "--port", str(web_port))
            for i in range(workers):
                children.start(f"worker{i + 1}", "worker")
            wait_http(f"{base}/_sandbox/health", proc=sandbox)
            wait_http(f"{web}/readyz", proc=web_proc)
        console.print(f"[green]✓[/] Sandbox portal at {base}, webhooks at {web}, {workers} workers, "
                      f"Redis db {redis_db}")
        from worker.settings import load_settings

        settings = load_settings(environ=env)
        _setup_portal(settings)
        portal = Portal(base, app_token)
        queue = settings.worker.queue
        day = Day(portal, _settler(conn, queue, portal), random.Random(seed))
        day.play()
        _replay_failed(conn, queue)
        _report(portal, day, conn, queue, started)
    except KeyboardInterrupt:
        console.print("Interrupted: shutting down.")
        sys.exit(130)
    finally:
        with console.status("Stopping everything…"):
            children.stop()
        if logs:
            console.print(f"Logs kept in {logs}")


def _setup_portal(settings: Any) -> None:
    from worker import setup_portal
    from worker.deps import make_deps

    deps = make_deps(settings)
    plan = setup_portal.plan(deps.settings, deps.hubspot)
    setup_portal.apply(plan, deps.hubspot)
    what = "; ".join(plan.changes) if plan.changes else "no changes: the portal already has every lifecycle property"
    console.print(f"[green]✓[/] setup-portal: {what}")


def _replay_failed(conn: redis.Redis, queue: str) -> None:
    from rq.serializers import JSONSerializer

    registry = FailedJobRegistry(queue, connection=conn, serializer=JSONSerializer)
    ids = registry.get_job_ids()
    for job_id in ids:
        registry.requeue(job_id)
    conn.set("lc:demo:replayed", len(ids))
