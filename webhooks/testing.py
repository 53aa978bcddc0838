"""Helpers to build and sign webhook requests the way HubSpot does (tests, sandbox, benchmark).

Like `flask.testing`, this ships with the package so every caller signs the same way.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from webhooks.signature import HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_V3, HEADER_VERSION, sign_v1, sign_v2, sign_v3

__all__ = ["email_event", "encode", "hubspot_event", "signed_headers"]

_ids = itertools.count(1)


def encode(events: Any) -> bytes:
    """Compact JSON bytes, as HubSpot sends them."""
    return json.dumps(events, separators=(",", ":")).encode()


def signed_headers(
    *, secret: str, url: str, body: bytes, timestamp_ms: int, method: str = "POST", legacy: str | None = None
) -> dict[str, str]:
    """The signature headers HubSpot would send for `body` posted to `url` at `timestamp_ms`:
    v3, plus a v1 or v2 `X-HubSpot-Signature` when `legacy` is "v1"/"v2" (or only that one when
    `legacy` ends with "-only", e.g. "v2-only")."""
    headers: dict[str, str] = {}
    version = (legacy or "").removesuffix("-only")
    if not (legacy or "").endswith("-only"):
        headers[HEADER_V3] = sign_v3(secret=secret, method=method, uri=url, body=body, timestamp=str(timestamp_ms))
        headers[HEADER_TIMESTAMP] = str(timestamp_ms)
    if version == "v1":
        headers[HEADER_SIGNATURE] = sign_v1(secret=secret, body=body)
        headers[HEADER_VERSION] = "v1"
    elif version == "v2":
        headers[HEADER_SIGNATURE] = sign_v2(secret=secret, method=method, uri=url, body=body)
        headers[HEADER_VERSION] = "v2"
    return headers


def hubspot_event(kind: str = "contact.propertyChange", **overrides: Any) -> dict[str, Any]:
    """A HubSpot webhook event with a fresh eventId; `overrides` replace or add fields
    (a value of None removes the field)."""
    event: dict[str, Any] = {
        "eventId": next(_ids), "subscriptionId": 25, "portalId": 62515, "appId": 4242,
        "occurredAt": 1_764_000_000_000, "subscriptionType": kind, "attemptNumber": 0,
        "objectId": 101, "changeSource": "CRM_UI", "sourceId": "userId:76023669",
    }
    if kind.endswith(".propertyChange"):
        event.update(propertyName="hubspotscore", propertyValue="120")
    elif kind.endswith(".merge"):
        event.update(primaryObjectId=101, mergedObjectIds=[102], newObjectId=None, numberOfPropertiesMoved=3)
    elif kind.endswith(".associationChange"):
        del event["objectId"]
        event.update(associationType="CONTACT_TO_COMPANY", fromObjectId=101, toObjectId=9001,
                     associationRemoved=False, isPrimaryAssociation=True)
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not None}


def email_event(kind: str = "BOUNCE", **overrides: Any) -> dict[str, Any]:
    """An Email Events API record; `overrides` replace or add fields (None removes one)."""
    event: dict[str, Any] = {
        "id": f"em-{next(_ids)}", "type": kind, "recipient": "Ada.Lovelace@Example.com",
        "emailCampaignId": 5001, "created": 1_764_000_000_000, "portalId": 62515, "appId": 4242,
    }
    if kind == "BOUNCE":
        event["category"] = "HARD_BOUNCE"
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not None}
