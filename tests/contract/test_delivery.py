"""Webhook delivery mechanics on dedicated sandboxes: the in-flight cap, timeouts and connection errors
retried then given up, configured latency, and a deterministic, webhook-free demo seed."""

from __future__ import annotations

import ast
import pathlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import requests
from hubspot.crm.contacts import SimplePublicObjectInputForCreate as In
from werkzeug.wrappers import Request

from sandbox.config import SandboxConfig
from sandbox.seed import build_portal
from sandbox.server import SandboxServer
from sandbox.state import Sandbox

from .conftest import make_client
from .helpers import unique_email
from .receiver import Receiver

pytestmark = pytest.mark.contract
TOKEN = "delivery-token"


@pytest.fixture()
def slow_receiver() -> Iterator[Receiver]:
    rec = Receiver().start()
    yield rec
    rec.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_at_most_max_concurrency_requests_in_flight(slow_receiver: Receiver) -> None:
    state = {"now": 0, "peak": 0}
    lock = threading.Lock()

    def slow(request: Request) -> int:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.15)
        with lock:
            state["now"] -= 1
        return 200

    slow_receiver.responder = slow
    config = SandboxConfig(
        port=0,
        app_token=TOKEN,
        seed="none",
        webhook_url=slow_receiver.url(),
        webhook_max_concurrency=2,
        webhook_batch_window_ms=1,
        rate_limit="0",
    )
    with SandboxServer(config) as srv:
        api = make_client(srv.base_url, TOKEN).crm.contacts.basic_api
        started = time.monotonic()
        for _ in range(8):
            api.create(In(properties={"email": unique_email("conc")}))
            time.sleep(0.01)
        assert time.monotonic() - started < 1.0  # API calls never wait for deliveries
        assert srv.sandbox.dispatcher.flush(10)
    assert state["peak"] == 2 and len(slow_receiver.snapshot()) >= 3


def test_timeouts_are_retried_with_the_next_attempt_number(slow_receiver: Receiver) -> None:
    def first_attempt_hangs(request: Request) -> int:
        if '"attemptNumber":0' in request.get_data(as_text=True):
            time.sleep(0.6)
        return 204

    slow_receiver.responder = first_attempt_hangs
    config = SandboxConfig(
        port=0,
        app_token=TOKEN,
        seed="none",
        webhook_url=slow_receiver.url(),
        webhook_timeout_s=0.2,
        webhook_retry_base_s=0.01,
        rate_limit="0",
    )
    with SandboxServer(config) as srv:
        make_client(srv.base_url, TOKEN).crm.contacts.basic_api.create(
            In(properties={"email": unique_email("to")})
        )
        assert srv.sandbox.dispatcher.flush(10)
        log = requests.get(f"{srv.base_url}/_sandbox/webhooks/log").json()["results"]
    assert [(e["attemptNumber"], e["outcome"]) for e in log] == [(0, "retrying"), (1, "delivered")]
    assert "Timeout" in log[0]["error"]


def test_connection_errors_give_up_after_max_attempts_and_latency_applies() -> None:
    config = SandboxConfig(
        port=0,
        app_token=TOKEN,
        seed="none",
        webhook_url=f"http://127.0.0.1:{_free_port()}/x",
        webhook_max_attempts=3,
        webhook_retry_base_s=0.01,
        latency_ms=60,
        rate_limit="0",
    )
    with SandboxServer(config) as srv:
        api = make_client(srv.base_url, TOKEN).crm.contacts.basic_api
        started = time.monotonic()
        api.create(In(properties={"email": unique_email("ce")}))
        assert time.monotonic() - started >= 0.06
        assert srv.sandbox.dispatcher.flush(10)
        stats = requests.get(f"{srv.base_url}/_sandbox/stats").json()["webhooks"]
        log = requests.get(f"{srv.base_url}/_sandbox/webhooks/log").json()["results"]
    assert (stats["failed"], stats["delivered"], stats["pending"]) == (1, 0, 0)
    assert [e["attemptNumber"] for e in log] == [0, 1, 2] and log[-1]["outcome"] == "failed"
    assert all("ConnectionError" in e["error"] for e in log)


# lifecycle-spec §2: milestones allowed in each status
ALLOWED = {
    "prospect": {"new", "received_campaigns", "dead", "qualified", "unqualified"},
    "mql": {
        "assigned",
        "in_review",
        "reassign",
        "sales_qualified",
        "return_to_nurture",
        "unqualified",
        "dead",
    },
    "srl": {"return_to_nurture", "unqualified", "sales_qualified", "dead"},
    "sql": {"working", "contract_negotiations", "convert_to_customer", "return_to_nurture", "dead"},
    "customer": {"active", "inactive", "out_of_business", "dead"},
}


def test_demo_seed_is_deterministic_realistic_and_silent() -> None:
    config = SandboxConfig(seed="demo", random_seed=7, webhook_url="http://127.0.0.1:9/never")
    started = time.monotonic()
    sandbox = Sandbox(config)
    assert time.monotonic() - started < 4.0
    assert sandbox.dispatcher.stats()["pending"] == 0 and sandbox.dispatcher.stats()["not_sent"] == 0
    sandbox.close()

    def summary(portal_config: SandboxConfig) -> list[tuple[str, ...]]:
        store = build_portal(portal_config).store
        keys = (
            "email",
            "contact_status",
            "contact_milestone",
            "vertical",
            "hubspot_owner_id",
            "gmv_forecast",
        )
        return [tuple(c.properties.get(k, "") for k in keys) for c in store.scan("contacts")]

    first = summary(config)
    assert first == summary(config) and first != summary(SandboxConfig(seed="demo", random_seed=8))
    assert len(first) >= 500 and len({row[0] for row in first}) == len(first)
    statuses = Counter(row[1] for row in first)
    assert set(statuses) == set(ALLOWED) and statuses["prospect"] > statuses["customer"] > 0
    assert all(milestone in ALLOWED[status] for _, status, milestone, *_ in first)
    assert all(owner for _, status, _, _, owner, _ in first if status != "prospect")

    portal = build_portal(config)
    companies = portal.store.scan("companies")
    assert len(companies) == 50
    for company in companies:
        contacts = portal.store.associations("companies", company.id, "contacts")
        ranks = [portal.store.get("contacts", cid).properties["contact_status"] for cid in contacts]
        order = ["prospect", "mql", "srl", "sql", "customer"]
        assert company.properties["account_status"] == max(ranks, key=order.index)
        if company.properties["account_status"] == "customer":
            assert company.properties["poc_contact_id"] in {str(c) for c in contacts}
    first_contact = portal.store.get("contacts", portal.store.scan("contacts")[0].id)
    assert first_contact is not None
    history = first_contact.history["contact_status"]
    assert history[0].source_type == "INTEGRATION" and history[0].source_id == str(config.app_id)


def test_sandbox_package_never_imports_the_worker() -> None:
    root = pathlib.Path(__file__).resolve().parents[2] / "sandbox"
    forbidden = {"worker", "rules", "webhooks"}
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            assert not {n.split(".")[0] for n in names} & forbidden, f"{path.name} imports {names}"


def test_a_keep_alive_connection_the_receiver_closed_while_idle_is_reopened_once() -> None:
    """The sandbox's sender keeps one connection per thread; a receiver that closes it between
    deliveries (as servers do with idle keep-alive connections) costs no failed attempt."""
    import socket

    from sandbox.webhooks_out import WebhookDispatcher

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    seen: list[bytes] = []

    def serve() -> None:
        for _ in range(2):  # one request per connection, answered as keep-alive, then closed
            conn, _ = server.accept()
            seen.append(conn.recv(65536))
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n")
            time.sleep(0.05)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    dispatcher = WebhookDispatcher(client_secret="s", target_url=None, max_attempts=1, retry_base_s=0.01,
                                   timeout_s=2, max_concurrency=1, batch_window_ms=10)
    url = f"http://127.0.0.1:{port}/hook"
    try:
        dispatcher.submit_record(url, [{"id": "a"}])
        assert dispatcher.flush(5)
        time.sleep(0.2)  # the receiver has closed the idle connection by now
        dispatcher.submit_record(url, [{"id": "b"}])
        assert dispatcher.flush(5)
    finally:
        dispatcher.close()
        server.close()
    assert [(e["outcome"], e["attemptNumber"]) for e in dispatcher.log()] == [("delivered", 0), ("delivered", 0)]
    assert len(seen) == 2 and b'"id":"b"' in seen[1]
