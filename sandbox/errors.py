"""HubSpot's error bodies, and the one exception every sandbox handler raises to answer with one.

HubSpotError(status, body) is turned into a JSON response by the app's error handler. The builders
below reproduce the shapes in hubspot-facts.md §3 and the SDK's Error/StandardError models.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

__all__ = [
    "HubSpotError",
    "error_body",
    "standard_error",
    "not_found",
    "validation",
    "property_errors",
    "conflict",
    "unauthorized",
    "rate_limited",
    "unknown_object_type",
    "status_error",
]

AUTH_MESSAGE = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find "
    "more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)


class HubSpotError(Exception):
    """Answer the current request with `status` and HubSpot's JSON error `body`."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status}: {body.get('message')}")
        self.status = status
        self.body = body
        self.headers = headers or {}


def correlation_id() -> str:
    return str(uuid.uuid4())


def error_body(message: str, category: str, **extra: Any) -> dict[str, Any]:
    """The top-level error shape: status, message, correlationId, category (+ context, subCategory...)."""
    body: dict[str, Any] = {"status": "error", "message": message, "correlationId": correlation_id()}
    body.update({k: v for k, v in extra.items() if v is not None})
    body["category"] = category
    return body


def standard_error(
    message: str, category: str, context: dict[str, list[str]] | None = None, sub_category: str | None = None
) -> dict[str, Any]:
    """One entry of a 207 `errors` list; every field the SDK's StandardError requires is present."""
    entry: dict[str, Any] = {
        "status": "error",
        "category": category,
        "message": message,
        "context": context or {},
        "links": {},
        "errors": [],
    }
    if sub_category:
        entry["subCategory"] = sub_category
    return entry


def not_found(object_id: str) -> HubSpotError:
    message = (
        "resource not found" if object_id.isdigit() else "Object not found.  objectId are usually numeric."
    )
    return HubSpotError(404, error_body(message, "OBJECT_NOT_FOUND", context={"id": [object_id]}))


def validation(message: str, **extra: Any) -> HubSpotError:
    return HubSpotError(400, error_body(message, "VALIDATION_ERROR", **extra))


def property_errors(items: list[dict[str, Any]]) -> HubSpotError:
    """400 for invalid property values, listing each as HubSpot does inside `message`.

    `items` entries: {"name", "error" (PROPERTY_DOESNT_EXIST, INVALID_OPTION, ...), "message"}.
    """
    listed = [
        {
            "isValid": False,
            "message": item["message"],
            "error": item["error"],
            "name": item["name"],
            "localizedErrorMessage": item["message"],
        }
        for item in items
    ]
    text = "Property values were not valid: " + json.dumps(listed, separators=(",", ":"))
    return validation(text)


def conflict(message: str) -> HubSpotError:
    return HubSpotError(409, error_body(message, "CONFLICT"))


def unauthorized() -> HubSpotError:
    return HubSpotError(401, error_body(AUTH_MESSAGE, "INVALID_AUTHENTICATION"))


def rate_limited(policy: str = "TEN_SECONDLY_ROLLING", headers: dict[str, str] | None = None) -> HubSpotError:
    """429 with the RATE_LIMIT body (errorType/policyName/requestId, no category), as in [USAGE]."""
    messages = {
        "TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling limit.",
        "SECONDLY": "You have reached your secondly limit.",
        "DAILY": "You have reached your daily limit.",
    }
    body = {
        "status": "error",
        "message": messages.get(policy, "You have reached your limit."),
        "errorType": "RATE_LIMIT",
        "correlationId": correlation_id(),
        "policyName": policy,
        "requestId": str(uuid.uuid4()),
    }
    return HubSpotError(429, body, headers)


def unknown_object_type(name: str) -> HubSpotError:
    return validation(f"Unable to infer object type from: {name}")


_CATEGORY_BY_STATUS = {
    400: ("Bad request", "VALIDATION_ERROR"),
    403: ("This app hasn't been granted all required scopes to make this call.", "MISSING_SCOPES"),
    404: ("resource not found", "OBJECT_NOT_FOUND"),
    409: ("Conflict", "CONFLICT"),
    423: ("Too many requests are modifying this object; the object is locked.", "LOCKED"),
    477: ("Migration in progress", "MIGRATION_IN_PROGRESS"),
    500: ("internal error", "INTERNAL_ERROR"),
    502: ("Bad gateway", "BAD_GATEWAY"),
    503: ("Service unavailable", "SERVICE_UNAVAILABLE"),
    504: ("Gateway timeout", "GATEWAY_TIMEOUT"),
}


def status_error(status: int) -> HubSpotError:
    """A generic HubSpot error for an injected fault of `status` (429 gets the RATE_LIMIT body)."""
    if status == 429:
        return rate_limited()
    message, category = _CATEGORY_BY_STATUS.get(
        status, ("error", "INTERNAL_ERROR" if status >= 500 else "ERROR")
    )
    return HubSpotError(status, error_body(message, category))
