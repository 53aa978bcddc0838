"""The webhook receiver: `create_app()` builds the Flask app (gunicorn: 'webhooks:create_app()').

Errors map to answers here: SignatureError → 401 (generic body), PayloadError → 400 (short
reason), a body over `webhooks.max_body_bytes` → 413, Redis unavailable → 503 + Retry-After.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog
from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from worker.errors import PayloadError, SignatureError

if TYPE_CHECKING:
    from flask.typing import ResponseReturnValue
    from redis import Redis

    from webhooks.metrics import Metrics
    from worker.settings import Settings

__all__ = ["RETRY_AFTER_S", "create_app"]

RETRY_AFTER_S = 10
BENCH_ENV = "LIFECYCLE_BENCH"
_ENDPOINTS = {"webhooks.receive_hubspot": "hubspot", "webhooks.receive_email_events": "email_events"}
_OUTCOMES = {200: "ok", 400: "bad_payload", 401: "unauthorized", 413: "too_large", 503: "unavailable"}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def create_app(
    settings: Settings | None = None,
    *,
    redis: Redis | None = None,
    clock_ms: Callable[[], int] | None = None,
) -> Flask:
    """Build the app. Settings default to `load_settings()` (config.yaml + environment); a missing
    HUBSPOT_CLIENT_SECRET raises ConfigError here, at startup. Tests inject all three."""
    # Imported here, not at module level: `lifecycle serve` imports this package before it sets
    # PROMETHEUS_MULTIPROC_DIR, which prometheus_client reads when first imported.
    from webhooks.metrics import Metrics
    from webhooks.payload import Router
    from webhooks.store import DeliveryStore
    from webhooks.views import EXTENSION, Deps, bp, register_bench
    from worker.enqueue import RedisUnavailableError, make_queue, make_redis, queue_depth
    from worker.logs import configure_logging
    from worker.settings import load_settings

    settings = settings or load_settings()
    settings.require("HUBSPOT_CLIENT_SECRET")
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    conn = redis if redis is not None else make_redis(settings.redis_url)
    queue = make_queue(conn, settings.worker.queue)

    def depth() -> int | None:
        try:
            return queue_depth(queue)
        except RedisUnavailableError:
            return None

    metrics = Metrics(queue.name, depth)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.webhooks.max_body_bytes
    if settings.webhooks.trust_proxy:
        # Heroku-style TLS termination: the signed URL is the public https one.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_port=1)  # type: ignore[method-assign]
    app.extensions[EXTENSION] = Deps(settings, conn, queue, clock_ms or _now_ms, Router(settings), metrics,
                                   DeliveryStore(queue, settings))
    app.register_blueprint(bp)
    if os.environ.get(BENCH_ENV) == "1":
        register_bench(app)
    _register_errors(app, RedisUnavailableError)
    _register_request_log(app, metrics)
    return app


def _register_errors(app: Flask, unavailable: type[Exception]) -> None:
    @app.errorhandler(SignatureError)
    def unauthorized(exc: SignatureError) -> ResponseReturnValue:
        g.reason = str(exc)  # logged; never the secret or the expected signature
        return jsonify(error="unauthorized"), 401

    @app.errorhandler(PayloadError)
    def bad_payload(exc: PayloadError) -> ResponseReturnValue:
        g.reason = str(exc)
        return jsonify(error=str(exc)), 400

    @app.errorhandler(unavailable)
    def redis_unavailable(exc: Exception) -> ResponseReturnValue:
        g.reason = str(exc)
        return jsonify(error="temporarily unavailable"), 503, {"Retry-After": str(RETRY_AFTER_S)}

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> ResponseReturnValue:
        g.reason = exc.name
        return jsonify(error=exc.name.lower()), exc.code or 500


def _register_request_log(app: Flask, metrics: Metrics) -> None:
    log = structlog.get_logger("webhooks")  # one proxy per app: it binds once, on first use

    @app.before_request
    def start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def log_request(response: Response) -> Response:
        endpoint = _ENDPOINTS.get(request.endpoint or "")
        if endpoint is None:
            return response
        status = response.status_code
        outcome = _OUTCOMES.get(status, "error")
        metrics.child(metrics.requests, endpoint, outcome).inc()
        counts = g.get("counts") or {}
        log.info(
            "webhook_request",
            method=request.method, path=request.path, status=status, outcome=outcome,
            accepted=counts.get("accepted", 0), duplicates=counts.get("duplicates", 0),
            dropped=counts.get("dropped", 0), sig_version=g.get("sig_version"),
            reason=g.get("reason"), duration_ms=round((time.perf_counter() - g.started) * 1000, 2),
        )
        return response
