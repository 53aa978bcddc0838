"""What happens before every HubSpot API request: stats, latency, injected faults, auth, rate limits.

Control endpoints (/_sandbox/*) skip all of it. Search is limited per second with no rate-limit
headers; everything else shares a rolling window per token kind and gets X-HubSpot-RateLimit-* headers.
"""

from __future__ import annotations

import re
import time

from flask import Flask, Response, g, jsonify, request

from .ctx import current
from .errors import HubSpotError, rate_limited, status_error, unauthorized
from .model import CRM_UI, INTEGRATION, Actor
from .objecttypes import resolve_type

__all__ = ["install_guard", "path_template"]

_USER_TOKEN = re.compile(r"^user-(\d+)$")
_TYPE_VARS = {"object_type", "from_type", "to_type"}
_PLACEHOLDERS = {
    "object_id": "id",
    "to_id": "toId",
    "from_id": "fromId",
    "app_id": "appId",
    "sub_id": "subscriptionId",
    "name": "name",
    "email": "email",
    "owner_id": "ownerId",
    "pipeline_id": "pipelineId",
}
_VAR = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def path_template() -> str:
    """e.g. "/crm/v3/objects/contacts/{id}": object types stay literal, ids become placeholders."""
    rule = request.url_rule
    if rule is None:
        return request.path
    args = request.view_args or {}

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in _TYPE_VARS:
            raw = str(args.get(name, name))
            found = resolve_type(raw)
            return found.name if found else raw
        return "{" + _PLACEHOLDERS.get(name, name) + "}"

    return _VAR.sub(substitute, rule.rule)


def _authenticate() -> tuple[Actor, str]:
    """(actor, rate-limit bucket) for the request, or 401 in HubSpot's shape."""
    config = current().config
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if token and token == config.app_token:
        return Actor(INTEGRATION, str(config.app_id)), "app"
    user = _USER_TOKEN.match(token)
    if user:
        return Actor(CRM_UI, f"userId:{user.group(1)}", int(user.group(1))), "users"
    if request.path.startswith(("/webhooks/v3/", "/email/public/v1/")) and request.args.get("hapikey"):
        return Actor(INTEGRATION, str(config.app_id)), "developer"  # developer API key: any non-empty value
    raise unauthorized()


def _is_search() -> bool:
    return (
        request.method == "POST"
        and request.path.startswith("/crm/v3/objects/")
        and request.path.endswith("/search")
    )


def _limit_headers(limit: int, remaining: int, window_ms: int, daily_used: int) -> dict[str, str]:
    daily = current().config.daily_limit
    return {
        "X-HubSpot-RateLimit-Interval-Milliseconds": str(window_ms),
        "X-HubSpot-RateLimit-Max": str(limit),
        "X-HubSpot-RateLimit-Remaining": str(remaining),
        "X-HubSpot-RateLimit-Daily": str(daily),
        "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, daily - daily_used)),
    }


def _apply_fault() -> None:
    sandbox = current()
    rule = sandbox.faults.match(request.method, request.path)
    if rule is None:
        return
    sandbox.stats.count_fault()
    if rule.latency_ms:
        time.sleep(rule.latency_ms / 1000)
    if rule.timeout:
        time.sleep(sandbox.config.fault_timeout_s)
        raise status_error(504)
    if rule.status and rule.status >= 400:
        error = status_error(rule.status)
        limit = sandbox.config.parsed_rate_limit
        if rule.status == 429 and limit and not _is_search():
            error.headers.update(_limit_headers(limit.limit, 0, int(limit.window_s * 1000), 0))
        raise error


def _check_limits(bucket: str) -> None:
    sandbox = current()
    if _is_search():
        if not sandbox.search_limiter.hit(request.headers.get("Authorization", bucket)).allowed:
            sandbox.stats.count_rate_limited()
            raise rate_limited("SECONDLY")
        return
    if sandbox.limiter is None:
        return
    verdict = sandbox.limiter.hit(bucket)
    daily_used = sandbox.count_daily(bucket)
    headers = _limit_headers(verdict.limit, verdict.remaining, verdict.window_ms, daily_used)
    g.rate_headers = headers
    if not verdict.allowed:
        sandbox.stats.count_rate_limited()
        raise rate_limited("TEN_SECONDLY_ROLLING", headers)


def _before() -> None:
    if request.path.startswith("/_sandbox"):
        return
    sandbox = current()
    sandbox.stats.count_call(f"{request.method} {path_template()}")
    if sandbox.config.latency_ms:
        time.sleep(sandbox.config.latency_ms / 1000)
    _apply_fault()
    g.actor, bucket = _authenticate()
    _check_limits(bucket)


def _after(response: Response) -> Response:
    for key, value in (getattr(g, "rate_headers", None) or {}).items():
        response.headers.setdefault(key, value)
    return response


def install_guard(app: Flask) -> None:
    """Register the hooks and the HubSpotError → JSON handler on `app`."""
    app.before_request(_before)
    app.after_request(_after)

    @app.errorhandler(HubSpotError)
    def _hubspot_error(exc: HubSpotError) -> Response:
        response = jsonify(exc.body)
        response.status_code = exc.status
        for key, value in exc.headers.items():
            response.headers[key] = value
        return response
