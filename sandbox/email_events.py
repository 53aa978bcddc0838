"""Email events: what HubSpot's email tool records (legacy GET /email/public/v1/events), and the
simulation behind POST /_sandbox/email-events that updates the contact's email-health properties."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint, Response, jsonify, request

from .ctx import current
from .errors import validation
from .model import EMAIL, Actor
from .timeutil import now_ms

__all__ = ["EmailEvents", "bp", "ingest", "EVENT_TYPES", "HARD_BOUNCE_REASONS"]

EVENT_TYPES = frozenset(
    {
        "SENT",
        "PROCESSED",
        "DROPPED",
        "DELIVERED",
        "DEFERRED",
        "BOUNCE",
        "OPEN",
        "CLICK",
        "FORWARD",
        "PRINT",
        "SPAMREPORT",
        "STATUSCHANGE",
        "UNBOUNCE",
        "MTA_DROPPED",
    }
)
HARD_BOUNCE_REASONS = ("UNKNOWN_USER", "MAILBOX_FULL", "CONTENT", "SPAM", "POLICY", "OTHER")
_EMAIL_TOOL = Actor(EMAIL)  # HubSpot's email tool: changeSource EMAIL, no sourceId (assumed)
_MAX_LIMIT = 1000


class EmailEvents:
    """Recorded events, thread-safe, served newest first."""

    def __init__(self, portal_id: int, app_id: int, clock: Callable[[], int] = now_ms) -> None:
        self.portal_id, self.app_id, self._clock = portal_id, app_id, clock
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []

    def add(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and store one record, assigning id, created, portalId and appId."""
        kind = str(raw.get("type") or "").upper()
        if kind not in EVENT_TYPES:
            raise validation(f"type: expected one of {sorted(EVENT_TYPES)}, got {raw.get('type')!r}")
        recipient = str(raw.get("recipient") or "").strip().lower()
        if not recipient and kind != "UNBOUNCE":
            raise validation("recipient: required")
        created = int(raw.get("created") or self._clock())
        record: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "created": created,
            "type": kind,
            "recipient": recipient,
            "portalId": self.portal_id,
            "appId": self.app_id,
            "appName": "Batch",
            "emailCampaignId": int(raw.get("emailCampaignId") or 0),
        }
        record.update({k: v for k, v in raw.items() if k not in record and k not in ("id", "unsubscribed")})
        if raw.get("unsubscribed") and "subscriptions" not in record:
            record["subscriptions"] = [{"status": "UNSUBSCRIBED"}]
        record.setdefault("sentBy", {"id": str(uuid.uuid4()), "created": created})
        with self._lock:
            self._events.append(record)
        return record

    def query(self, args: Mapping[str, str]) -> tuple[list[dict[str, Any]], bool, int]:
        """Filter by recipient/eventType/campaignId/appId/start/endTimestamp; page by offset."""
        start, end = int(args.get("startTimestamp") or 0), int(args.get("endTimestamp") or 2**62)
        recipient = (args.get("recipient") or "").lower()
        kind, campaign = (args.get("eventType") or "").upper(), args.get("campaignId")
        with self._lock:
            found = [
                e
                for e in reversed(self._events)
                if start <= e["created"] <= end
                and (not recipient or e["recipient"] == recipient)
                and (not kind or e["type"] == kind)
                and (not campaign or str(e["emailCampaignId"]) == campaign)
            ]
        offset = int(args.get("offset") or 0)
        limit = max(1, min(int(args.get("limit") or _MAX_LIMIT), _MAX_LIMIT))
        page = found[offset : offset + limit]
        return page, offset + limit < len(found), offset + len(page)


def _health_updates(record: Mapping[str, Any], current_props: Mapping[str, str]) -> dict[str, str]:
    """The email-health properties HubSpot changes for this event."""
    kind = record["type"]
    if kind == "DELIVERED":
        delivered = int(float(current_props.get("hs_email_delivered") or 0)) + 1
        return {"hs_email_delivered": str(delivered), "hs_email_last_send_date": str(record["created"])}
    if kind == "BOUNCE":
        category = str(record.get("category") or "").upper()
        reason = (
            category if category in HARD_BOUNCE_REASONS else str(record.get("bounceReason") or "UNKNOWN_USER")
        )
        reason = reason if reason in HARD_BOUNCE_REASONS else "OTHER"
        bounced = int(float(current_props.get("hs_email_bounce") or 0)) + 1
        updates = {"hs_email_hard_bounce_reason_enum": reason, "hs_email_bounce": str(bounced)}
        if reason == "UNKNOWN_USER":
            updates["hs_email_bad_address"] = "true"
        return updates
    if kind == "SPAMREPORT" or (kind == "STATUSCHANGE" and _unsubscribes(record)):
        return {"hs_email_optout": "true"}
    return {}


def _unsubscribes(record: Mapping[str, Any]) -> bool:
    subs = record.get("subscriptions") or []
    return record.get("portalSubscriptionStatus") == "UNSUBSCRIBED" or any(
        isinstance(s, Mapping) and s.get("status") == "UNSUBSCRIBED" for s in subs
    )


def ingest(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Record one event as HubSpot's email tool would, update the contact, post it to the email webhook."""
    sandbox = current()
    portal = sandbox.portal
    record = portal.emails.add(raw)
    contact = (
        portal.store.get("contacts", record["recipient"], id_property="email")
        if record["recipient"]
        else None
    )
    if contact is not None:
        updates = _health_updates(record, contact.properties)
        if updates.get("hs_email_optout") == "true":
            portal.commprefs.unsubscribe_all(record["recipient"])
        if updates:
            portal.store.update("contacts", contact.id, updates, _EMAIL_TOOL, allow_read_only=True)
    sandbox.dispatcher.submit_record(sandbox.config.email_webhook_url, [record], kind="email", legacy="v2")
    return record


bp = Blueprint("email_events", __name__)


@bp.get("/email/public/v1/events")
def list_events() -> Response:
    events, has_more, offset = current().portal.emails.query(request.args)
    return jsonify({"events": events, "hasMore": has_more, "offset": str(offset)})
