"""The endpoints: verify, validate, dedupe and enqueue, answer. No HubSpot call, no rules."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson
from flask import Blueprint, Flask, Request, current_app, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from webhooks.fastpath import route_hubspot
from webhooks.payload import Routed, Router
from webhooks.signature import verify_request
from webhooks.store import DeliveryStore
from worker.enqueue import ping

if TYPE_CHECKING:
    from flask.typing import ResponseReturnValue
    from redis import Redis
    from rq import Queue

    from webhooks.metrics import Metrics
    from worker.settings import Settings

EXTENSION = "hubspot_worker"
_JSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE

bp = Blueprint("webhooks", __name__)


@dataclass(frozen=True)
class Deps:
    """Everything the views use, wired once in `create_app` (tests inject their own)."""

    settings: Settings
    redis: Redis
    queue: Queue
    clock_ms: Callable[[], int]
    router: Router
    metrics: Metrics
    store: DeliveryStore


def deps() -> Deps:
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]


def public_uri(req: Request) -> str:
    """The URL HubSpot called, as it signed it: scheme and host (from the proxy headers when
    ProxyFix is on) plus the raw request target, exactly as sent (query order kept)."""
    environ = req.environ
    target = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not target:
        target = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""), safe="/;=,:@!$&'()*+~")
        if environ.get("QUERY_STRING"):
            target += "?" + environ["QUERY_STRING"]
    if not target.startswith("/"):  # absolute-form request target: take its path and query
        rest = target.split("://", 1)[-1]
        target = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return f"{req.scheme}://{req.host}{target}"


def _ingest(endpoint: str, source: str, route: Callable[[Router, bytes], Routed]) -> ResponseReturnValue:
    d = deps()
    received_at = d.clock_ms()
    body = request.get_data(cache=False)  # the exact bytes HubSpot signed; 413 past MAX_CONTENT_LENGTH
    hooks = d.settings.webhooks
    if request.content_length is None and len(body) >= hooks.max_body_bytes:
        raise RequestEntityTooLarge()  # a chunked body is cut at the limit instead of refused
    g.sig_version = verify_request(
        secret=d.settings.client_secret, method=request.method, uri=public_uri(request), body=body,
        headers=request.headers, now_ms=received_at, max_age_s=hooks.signature_max_age_s,
        allow_legacy=hooks.allow_legacy_signatures,
    )
    routed = route(d.router, body)
    started = time.perf_counter()
    result = d.store.store(routed.events, source=source, received_at=received_at, plans=routed.plans)
    m = d.metrics
    if routed.events:
        m.child(m.enqueue_seconds, endpoint).observe(time.perf_counter() - started)
    duplicates = result.duplicates + routed.duplicates
    if result.accepted:
        m.child(m.accepted, endpoint).inc(result.accepted)
    if duplicates:
        m.child(m.deduplicated, endpoint).inc(duplicates)
    for reason, count in routed.dropped.items():
        m.child(m.dropped, endpoint, reason).inc(count)
    counts: dict[str, Any] = {
        "accepted": result.accepted, "duplicates": duplicates, "dropped": routed.total_dropped,
    }
    g.counts = counts
    # What jsonify answers (sorted keys, a final newline), serialised by orjson: ~10x faster.
    body = orjson.dumps({**counts, "jobs": len(result.job_ids)}, option=_JSON_OPTIONS)
    return current_app.response_class(body, 200, mimetype="application/json")


@bp.post("/webhooks/hubspot")
def receive_hubspot() -> ResponseReturnValue:
    """HubSpot app webhooks: a signed JSON array of at most `max_events` events."""
    return _ingest("hubspot", "webhook", route_hubspot)


@bp.post("/webhooks/email-events")
def receive_email_events() -> ResponseReturnValue:
    """Email Events API records (one or an array), e.g. from a workflow's "Send a webhook"."""
    return _ingest("email_events", "email", Router.route_email)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """The process is up (no dependency checked)."""
    return jsonify(status="ok"), 200


@bp.get("/readyz")
def readyz() -> ResponseReturnValue:
    """Ready when Redis answers PING; 503 otherwise."""
    if ping(deps().redis):
        return jsonify(status="ready"), 200
    return jsonify(status="unavailable", reason="redis does not answer"), 503, {"Retry-After": "10"}


@bp.get("/metrics")
def metrics() -> ResponseReturnValue:
    """Prometheus text format."""
    from webhooks.metrics import CONTENT_TYPE

    return deps().metrics.render(), 200, {"Content-Type": CONTENT_TYPE}


def bench_noop() -> ResponseReturnValue:
    """The benchmark's ceiling: same server, no verification, no Redis (LIFECYCLE_BENCH=1 only)."""
    return "", 204


def register_bench(app: Flask) -> None:
    app.add_url_rule("/_bench/noop", "bench_noop", bench_noop, methods=["POST"])
