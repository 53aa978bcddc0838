"""Request-scoped access to the running sandbox and the caller (set by the guard before each request)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import current_app, g, request

from .errors import validation
from .model import Actor

if TYPE_CHECKING:
    from .state import Sandbox

__all__ = ["current", "actor", "json_body"]


def current() -> Sandbox:
    """The Sandbox this app serves (app.extensions["sandbox"])."""
    return current_app.extensions["sandbox"]  # type: ignore[no-any-return]


def actor() -> Actor:
    """Who is calling: the integration (app token) or a HubSpot user (user-<n>)."""
    return g.actor  # type: ignore[no-any-return]


def json_body(default: Any = None) -> Any:
    """The parsed JSON body; a malformed one is HubSpot's 400 'Invalid input JSON'."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        return default
    parsed = request.get_json(force=True, silent=True)
    if parsed is None:
        raise validation("Invalid input JSON on line 1, column 1: Cannot parse the request body as JSON")
    return parsed
