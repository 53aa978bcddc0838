"""Communication preferences: subscription definitions, per-email statuses, v3 and v4 endpoints.

An unsubscribe from all email also sets the contact's `hs_email_optout` to "true", which (as in
HubSpot) fires that property's change webhook. v3 has no unsubscribe-all; v4 does (hubspot-facts §5).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, request

from .ctx import actor, current, json_body
from .errors import validation
from .timeutil import iso_from_ms, now_ms

__all__ = ["CommPrefs", "bp", "DEFINITIONS", "opt_out_contact"]

# (id, name, description, purpose, communicationMethod)
DEFINITIONS: tuple[tuple[str, str, str, str, str], ...] = (
    ("1", "Marketing Information", "Marketing offers and updates.", "Marketing", "Email"),
    ("2", "One to One", "One to one emails from sales and service.", "Sales", "Email"),
    (
        "3",
        "Customer Service Communication",
        "Feedback requests and service updates.",
        "Customer Service",
        "Email",
    ),
)


class CommPrefs:
    """Per-email subscription statuses and the portal-wide opt-out, thread-safe."""

    def __init__(self, clock: Callable[[], int] = now_ms) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._unsubscribed: dict[str, dict[str, dict[str, Any]]] = {}
        self._opted_out: dict[str, int] = {}
        self._created = iso_from_ms(clock())

    def definitions(self) -> list[dict[str, Any]]:
        return [
            {
                "id": d_id,
                "name": name,
                "description": desc,
                "purpose": purpose,
                "communicationMethod": method,
                "isActive": True,
                "isDefault": d_id == "1",
                "isInternal": False,
                "businessUnitId": 0,
                "createdAt": self._created,
                "updatedAt": self._created,
            }
            for d_id, name, desc, purpose, method in DEFINITIONS
        ]

    def _definition(self, sub_id: str) -> tuple[str, str, str, str, str]:
        for definition in DEFINITIONS:
            if definition[0] == str(sub_id):
                return definition
        raise validation(f"No subscription definition exists with id {sub_id}.")

    def status_json(self, email: str, sub_id: str) -> dict[str, Any]:
        """A v3 PublicSubscriptionStatus (SUBSCRIBED unless opted out: assumed non-GDPR portal)."""
        d_id, name, desc, _, _ = self._definition(sub_id)
        with self._lock:
            explicit = self._unsubscribed.get(email, {}).get(d_id)
            wide = email in self._opted_out
        status = {
            "id": d_id,
            "name": name,
            "description": desc,
            "status": "NOT_SUBSCRIBED" if (explicit or wide) else "SUBSCRIBED",
            "sourceOfStatus": "PORTAL_WIDE_STATUS" if wide else "SUBSCRIPTION_STATUS",
        }
        if explicit and explicit.get("legalBasis"):
            status.update(
                {k: explicit[k] for k in ("legalBasis", "legalBasisExplanation") if explicit.get(k)}
            )
        return status

    def set_subscribed(
        self, email: str, sub_id: str, subscribed: bool, legal: dict[str, Any]
    ) -> dict[str, Any]:
        """v3 subscribe/unsubscribe; 400 when already in that state or opted out of everything."""
        self._definition(sub_id)
        with self._lock:
            current_unsub = sub_id in self._unsubscribed.get(email, {}) or email in self._opted_out
            if subscribed and email in self._opted_out:
                raise validation(
                    f"{email} has opted out of all email and cannot be resubscribed with this API."
                )
            if not subscribed and current_unsub:
                raise validation(f"{email} is already unsubscribed from subscription {sub_id}")
            if subscribed:
                self._unsubscribed.get(email, {}).pop(sub_id, None)
            else:
                self._unsubscribed.setdefault(email, {})[sub_id] = dict(legal)
        return self.status_json(email, sub_id)

    def unsubscribe_all(self, email: str) -> bool:
        """Opt `email` out of everything; False if it already was."""
        with self._lock:
            if email in self._opted_out:
                return False
            self._opted_out[email] = self._clock()
            return True

    def opted_out_at(self, email: str) -> int | None:
        with self._lock:
            return self._opted_out.get(email)


def opt_out_contact(email: str) -> None:
    """Reflect a portal-wide opt-out on the contact (if one has this email), as the caller."""
    store = current().portal.store
    if store.get("contacts", email, id_property="email") is not None:
        store.update(
            "contacts", email, {"hs_email_optout": "true"}, actor(), id_property="email", allow_read_only=True
        )


bp = Blueprint("commprefs", __name__, url_prefix="/communication-preferences")


def _window() -> dict[str, str]:
    stamp = iso_from_ms(now_ms())
    return {"startedAt": stamp, "completedAt": stamp}


@bp.get("/v3/definitions")
def definitions() -> Response:
    return jsonify({"subscriptionDefinitions": current().portal.commprefs.definitions()})


@bp.get("/v3/status/email/<email>")
def email_status(email: str) -> Response:
    prefs = current().portal.commprefs
    return jsonify(
        {
            "recipient": email.lower(),
            "subscriptionStatuses": [prefs.status_json(email.lower(), d[0]) for d in DEFINITIONS],
        }
    )


def _v3_update(subscribed: bool) -> Response:
    body = json_body({}) or {}
    email, sub_id = str(body.get("emailAddress") or "").lower(), str(body.get("subscriptionId") or "")
    if not email or not sub_id:
        raise validation("Some required fields were not set: [emailAddress, subscriptionId]")
    legal = {k: body.get(k) for k in ("legalBasis", "legalBasisExplanation")}
    return jsonify(current().portal.commprefs.set_subscribed(email, sub_id, subscribed, legal))


@bp.post("/v3/subscribe")
def subscribe() -> Response:
    return _v3_update(True)


@bp.post("/v3/unsubscribe")
def unsubscribe() -> Response:
    return _v3_update(False)


def _channel() -> None:
    if request.args.get("channel") != "EMAIL":
        raise validation("channel is required and must be EMAIL.")


def _v4_statuses(email: str, stamp: str) -> list[dict[str, Any]]:
    return [
        {
            "subscriberIdString": email,
            "subscriptionId": int(d_id),
            "subscriptionName": name,
            "channel": "EMAIL",
            "status": "UNSUBSCRIBED",
            "source": "Public API",
            "legalBasis": None,
            "legalBasisExplanation": None,
            "setStatusSuccessReason": "UNSUBSCRIBE_FROM_ALL_OCCURRED",
            "timestamp": stamp,
            "businessUnitId": 0,
        }
        for d_id, name, _, _, _ in DEFINITIONS
    ]


def _unsubscribe_all(email: str) -> None:
    if current().portal.commprefs.unsubscribe_all(email):
        opt_out_contact(email)


@bp.post("/v4/statuses/<email>/unsubscribe-all")
def v4_unsubscribe_all(email: str) -> Response:
    _channel()
    email = email.lower()
    _unsubscribe_all(email)
    verbose = request.args.get("verbose") == "true"
    stamp = iso_from_ms(now_ms())
    return jsonify(
        {"status": "COMPLETE", "results": _v4_statuses(email, stamp) if verbose else [], **_window()}
    )


@bp.post("/v4/statuses/batch/unsubscribe-all")
def v4_batch_unsubscribe_all() -> Response:
    _channel()
    inputs = [str(e).lower() for e in ((json_body({}) or {}).get("inputs") or [])]
    if len(inputs) > 100:
        raise validation("The maximum number of inputs supported in a batch request is 100.")
    stamp = iso_from_ms(now_ms())
    results = []
    for email in inputs:
        _unsubscribe_all(email)
        results.append({"subscriberIdString": email, "statuses": _v4_statuses(email, stamp)})
    return jsonify({"status": "COMPLETE", "results": results, **_window()})


def _wide_status(email: str) -> dict[str, Any]:
    opted = current().portal.commprefs.opted_out_at(email)
    return {
        "subscriberIdString": email,
        "wideStatusType": "PORTAL_WIDE",
        "channel": "EMAIL",
        "businessUnitId": 0,
        "status": "UNSUBSCRIBED" if opted else "SUBSCRIBED",
        "timestamp": iso_from_ms(opted) if opted else None,
    }


@bp.get("/v4/statuses/<email>/unsubscribe-all")
def v4_unsubscribe_all_status(email: str) -> Response:
    _channel()
    return jsonify({"status": "COMPLETE", "results": [_wide_status(email.lower())], **_window()})


@bp.post("/v4/statuses/batch/unsubscribe-all/read")
def v4_batch_unsubscribe_all_read() -> Response:
    _channel()
    inputs = [str(e).lower() for e in ((json_body({}) or {}).get("inputs") or [])]
    results = [{"subscriberIdString": e, "wideStatuses": [_wide_status(e)]} for e in inputs]
    return jsonify({"status": "COMPLETE", "results": results, **_window()})
