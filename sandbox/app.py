"""The Flask app factory: one Sandbox per app, HubSpot's API blueprints, the guard, control endpoints."""

from __future__ import annotations

import time
from collections.abc import Callable

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from . import associations, commprefs, control, crm, directory, email_events, properties, subscriptions
from .config import SandboxConfig
from .errors import error_body
from .guard import install_guard
from .state import Sandbox

__all__ = ["create_app"]


def create_app(config: SandboxConfig, *, clock: Callable[[], float] = time.monotonic) -> Flask:
    """Build the sandbox app for `config`. `clock` drives rate-limit windows (inject a fake in tests).

    The Sandbox is at app.extensions["sandbox"] (store, stats, dispatcher, faults...).
    """
    app = Flask("sandbox")
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep HubSpot's field order
    app.json.compact = True  # type: ignore[attr-defined]
    app.extensions["sandbox"] = Sandbox(config, clock=clock)
    install_guard(app)
    for blueprint in (
        crm.bp,
        associations.bp,
        properties.bp,
        directory.bp,
        commprefs.bp,
        email_events.bp,
        subscriptions.bp,
        control.bp,
    ):
        app.register_blueprint(blueprint)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        # Unknown routes and methods answer in HubSpot's error shape rather than Flask's HTML.
        category = "OBJECT_NOT_FOUND" if exc.code == 404 else "VALIDATION_ERROR"
        response = jsonify(error_body(exc.description or exc.name, category))
        response.status_code = exc.code or 500
        return response

    return app
