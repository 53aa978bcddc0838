"""Webhook subscriptions and settings (webhooks v3 API) and the event JSON HubSpot sends for a change."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from flask import Blueprint, Response, jsonify

from .ctx import current, json_body
from .errors import HubSpotError, error_body, validation
from .model import Change
from .objecttypes import OBJECT_TYPES
from .timeutil import iso_from_ms, now_ms

__all__ = ["Subscriptions", "bp", "EVENT_TYPES"]

_CRM_EVENTS = ("associationChange", "creation", "deletion", "merge", "propertyChange", "restore")
EVENT_TYPES = frozenset(
    [
        f"{o}.{e}"
        for o in ("company", "contact", "deal", "ticket", "product", "line_item", "object")
        for e in _CRM_EVENTS
    ]
    + ["contact.privacyDeletion", "event.completed"]
    + [
        f"conversation.{e}"
        for e in ("creation", "deletion", "newMessage", "privacyDeletion", "propertyChange")
    ]
)
_FLAGS = {
    "creation": "CREATED",
    "propertyChange": "UPDATED",
    "deletion": "DELETED",
    "merge": "MERGED",
    "privacyDeletion": "DELETED",
}


class Subscriptions:
    """The app's subscriptions. Until changed, every contact.* and company.* event is subscribed; a
    propertyChange subscription without propertyName (only the defaults have one) means every property."""

    def __init__(
        self,
        portal_id: int,
        app_id: int,
        target_url: str | None,
        max_concurrency: int,
        clock: Callable[[], int] = now_ms,
        event_ids: Iterator[int] | None = None,
    ) -> None:
        self.portal_id, self.app_id, self._clock = portal_id, app_id, clock
        self._lock = threading.Lock()
        self._ids = itertools.count(3_923_601)
        # Shared across resets by the Sandbox so event ids keep increasing for a receiver's dedupe ledger.
        self._event_ids = event_ids or itertools.count(531_833_541)
        self._subs: dict[int, dict[str, Any]] = {}
        for obj in ("contact", "company"):
            for event in ("creation", "propertyChange", "deletion", "merge", "associationChange"):
                self.create({"eventType": f"{obj}.{event}", "active": True}, allow_wildcard=True)
        now = clock()
        self.settings: dict[str, Any] | None = (
            None
            if not target_url
            else {
                "targetUrl": target_url,
                "throttling": {"maxConcurrentRequests": max_concurrency},
                "createdAt": iso_from_ms(now),
                "updatedAt": iso_from_ms(now),
            }
        )

    def create(self, body: Mapping[str, Any], allow_wildcard: bool = False) -> dict[str, Any]:
        event_type = str(body.get("eventType") or "")
        if event_type not in EVENT_TYPES:
            raise validation(f"Invalid eventType {event_type!r}.")
        prop = body.get("propertyName")
        if event_type.endswith(".propertyChange") and not prop and not allow_wildcard:
            raise validation("propertyName is required for propertyChange subscriptions.")
        if prop in ("hs_lastmodifieddate", "num_unique_conversion_events"):
            raise validation(f"Subscriptions to {prop} are not allowed.")
        now = iso_from_ms(self._clock())
        with self._lock:
            if len(self._subs) >= 1000:
                raise validation(
                    "Couldn't create another subscription. You've reached the maximum number "
                    "allowed per application (1000)."
                )
            sub_id = next(self._ids)
            sub: dict[str, Any] = {
                "id": sub_id,
                "eventType": event_type,
                "propertyName": prop or None,
                "active": bool(body.get("active", False)),
                "createdAt": now,
                "updatedAt": now,
            }
            self._subs[sub_id] = sub
            return dict(sub)

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(s) for s in self._subs.values()]

    def get(self, sub_id: int) -> dict[str, Any] | None:
        with self._lock:
            sub = self._subs.get(sub_id)
            return dict(sub) if sub else None

    def set_active(self, sub_id: int, active: bool) -> dict[str, Any] | None:
        with self._lock:
            sub = self._subs.get(sub_id)
            if sub is None:
                return None
            sub["active"], sub["updatedAt"] = active, iso_from_ms(self._clock())
            return dict(sub)

    def delete(self, sub_id: int) -> bool:
        with self._lock:
            return self._subs.pop(sub_id, None) is not None

    def events_for(self, change: Change, value: str | None) -> list[dict[str, Any]]:
        """HubSpot's payload entries for `change`, one per matching active subscription."""
        singular = OBJECT_TYPES[change.object_type].singular
        sub_type = f"{singular}.{change.event}"
        with self._lock:
            matching = [
                s
                for s in self._subs.values()
                if s["active"]
                and s["eventType"] == sub_type
                and (change.event != "propertyChange" or s["propertyName"] in (None, change.property_name))
            ]
            return [self._event(s, change, sub_type, value) for s in matching]

    def _event(
        self, sub: Mapping[str, Any], change: Change, sub_type: str, value: str | None
    ) -> dict[str, Any]:
        event: dict[str, Any] = {
            "eventId": next(self._event_ids),
            "subscriptionId": sub["id"],
            "portalId": self.portal_id,
            "appId": self.app_id,
            "occurredAt": change.occurred_at,
            "subscriptionType": sub_type,
            "attemptNumber": 0,
        }
        if change.event != "associationChange":
            event["objectId"] = change.object_id
        if change.event == "propertyChange":
            event["propertyName"], event["propertyValue"] = change.property_name, value
        if change.event in _FLAGS:
            event["changeFlag"] = _FLAGS[change.event]
        event["changeSource"] = change.actor.source_type
        if change.actor.source_id is not None:
            event["sourceId"] = change.actor.source_id
        event.update({k: v for k, v in change.extra.items() if k != "changeFlag"})
        return event


# ---- webhooks v3 API ------------------------------------------------------------
bp = Blueprint("webhooks_api", __name__, url_prefix="/webhooks/v3/<int:app_id>")


@bp.url_value_preprocessor
def _check_app(endpoint: str | None, values: dict[str, Any] | None) -> None:
    app_id = (values or {}).pop("app_id", None)
    if app_id != current().config.app_id:
        raise HubSpotError(404, error_body(f"App {app_id} not found.", "OBJECT_NOT_FOUND"))


def _sub_json(sub: Mapping[str, Any]) -> dict[str, Any]:
    out = {
        "id": str(sub["id"]),
        "createdAt": sub["createdAt"],
        "updatedAt": sub["updatedAt"],
        "eventType": sub["eventType"],
        "active": sub["active"],
    }
    if sub.get("propertyName"):
        out["propertyName"] = sub["propertyName"]
    return out


def _sub_or_404(sub_id: int) -> dict[str, Any]:
    sub = current().portal.subscriptions.get(sub_id)
    if sub is None:
        raise HubSpotError(404, error_body(f"Subscription {sub_id} not found.", "OBJECT_NOT_FOUND"))
    return sub


@bp.get("/settings")
def get_settings() -> Response:
    settings = current().portal.subscriptions.settings
    if settings is None:
        raise HubSpotError(404, error_body("No webhook settings found for this app.", "OBJECT_NOT_FOUND"))
    return jsonify(settings)


@bp.put("/settings")
def put_settings() -> Response:
    body = json_body({}) or {}
    target = body.get("targetUrl")
    max_conc = int((body.get("throttling") or {}).get("maxConcurrentRequests") or 0)
    if not target or max_conc <= 5:
        raise validation(
            "targetUrl is required and throttling.maxConcurrentRequests must be greater than five."
        )
    sandbox = current()
    now = iso_from_ms(now_ms())
    previous = sandbox.portal.subscriptions.settings or {"createdAt": now}
    sandbox.portal.subscriptions.settings = {
        "targetUrl": target,
        "throttling": {"maxConcurrentRequests": max_conc},
        "createdAt": previous["createdAt"],
        "updatedAt": now,
    }
    sandbox.dispatcher.target_url = target
    sandbox.dispatcher.set_max_concurrency(max_conc)
    return jsonify(sandbox.portal.subscriptions.settings)


@bp.delete("/settings")
def clear_settings() -> tuple[str, int]:
    sandbox = current()
    sandbox.portal.subscriptions.settings = None
    sandbox.dispatcher.target_url = None
    return "", 204


@bp.get("/subscriptions")
def list_subscriptions() -> Response:
    return jsonify({"results": [_sub_json(s) for s in current().portal.subscriptions.all()]})


@bp.post("/subscriptions")
def create_subscription() -> tuple[Response, int]:
    return jsonify(_sub_json(current().portal.subscriptions.create(json_body({}) or {}))), 201


@bp.get("/subscriptions/<int:sub_id>")
def get_subscription(sub_id: int) -> Response:
    return jsonify(_sub_json(_sub_or_404(sub_id)))


@bp.patch("/subscriptions/<int:sub_id>")
def patch_subscription(sub_id: int) -> Response:
    sub = _sub_or_404(sub_id)
    active = (json_body({}) or {}).get("active")
    if active is not None:
        sub = current().portal.subscriptions.set_active(sub_id, bool(active)) or sub
    return jsonify(_sub_json(sub))


@bp.delete("/subscriptions/<int:sub_id>")
def delete_subscription(sub_id: int) -> tuple[str, int]:
    current().portal.subscriptions.delete(sub_id)
    return "", 204


@bp.post("/subscriptions/batch/update")
def batch_update_subscriptions() -> tuple[Response, int]:
    inputs = (json_body({}) or {}).get("inputs") or []
    results, errors = [], []
    for item in inputs:
        sub = current().portal.subscriptions.set_active(int(item.get("id", 0)), bool(item.get("active")))
        if sub is None:
            errors.append(
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "context": {"ids": [str(item.get("id"))]},
                    "links": {},
                    "errors": [],
                    "message": f"Subscription {item.get('id')} not found.",
                }
            )
        else:
            results.append(_sub_json(sub))
    now = iso_from_ms(now_ms())
    body: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}
    if errors:
        body.update({"numErrors": len(errors), "errors": errors})
    return jsonify(body), 207 if errors else 200
