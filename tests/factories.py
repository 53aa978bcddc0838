"""Plain factories for tests: contacts, webhook events and email events as HubSpot sends them.

Every factory returns HubSpot-shaped JSON (dicts) or the parsed rules value, with defaults
that make a valid object; override any field by keyword.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from rules.lifecycle import decide
from rules.model import Contact, Decision, Trigger
from rules.policy import Policy
from rules.triggers import parse_contact, parse_trigger
from worker.settings import load_settings

CONFIG = Path(__file__).resolve().parent.parent / "config.yaml"
APP_ID = "4242"  # config.yaml's app_id: writes by this app are echoes
CONTACT_ID = "51"
T0 = 1_764_770_000_000  # a person's change, ms
NOW = T0 + 3_600_000  # when the worker evaluates


@functools.cache
def policy() -> Policy:
    """The Policy of the real config.yaml (no environment overrides)."""
    return load_settings(CONFIG, environ={}).policy


def contact_json(
    *,
    contact_id: str = CONTACT_ID,
    history: dict[str, list[dict[str, Any]]] | None = None,
    **props: str | None,
) -> dict[str, Any]:
    """A contact exactly as HubSpot's CRM API returns it."""
    raw: dict[str, Any] = {"id": contact_id, "properties": dict(props)}
    if history is not None:
        raw["propertiesWithHistory"] = history
    return raw


def make_contact(
    *,
    contact_id: str = CONTACT_ID,
    history: dict[str, list[dict[str, Any]]] | None = None,
    **props: str | None,
) -> Contact:
    """A parsed Contact; `history` (propertiesWithHistory) makes `has_history` True."""
    return parse_contact(contact_json(contact_id=contact_id, history=history, **props))


def entry(value: str, timestamp: int | str, *, by: str = "person") -> dict[str, Any]:
    """One propertiesWithHistory entry, by a person (CRM_UI) or by this app ("app")."""
    if by == "app":
        return {"value": value, "timestamp": timestamp, "sourceType": "INTEGRATION", "sourceId": APP_ID}
    return {"value": value, "timestamp": timestamp, "sourceType": "CRM_UI", "sourceId": "userId:7"}


def make_event(**overrides: Any) -> dict[str, Any]:
    """A webhook event: by default a person changing the contact's milestone to "in_review"."""
    event: dict[str, Any] = {
        "eventId": 100,
        "subscriptionId": 9,
        "portalId": 62515,
        "appId": int(APP_ID),
        "occurredAt": T0,
        "subscriptionType": "contact.propertyChange",
        "attemptNumber": 0,
        "objectId": int(CONTACT_ID),
        "propertyName": "contact_milestone",
        "propertyValue": "in_review",
        "changeSource": "CRM_UI",
        "sourceId": "userId:7",
    }
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not None}


def prop_event(name: str, value: str | None, *, at: int = T0, echo: bool = False, **overrides: Any) -> dict[str, Any]:
    """A contact.propertyChange of `name` to `value`, by a person or (echo) by this app."""
    source = {"changeSource": "INTEGRATION", "sourceId": APP_ID} if echo else {}
    return make_event(propertyName=name, propertyValue=value, occurredAt=at, **source, **overrides)


def created_event(**overrides: Any) -> dict[str, Any]:
    return make_event(subscriptionType="contact.creation", propertyName=None, propertyValue=None, **overrides)


def make_email_event(type: str = "BOUNCE", **overrides: Any) -> dict[str, Any]:
    """An Email Events API record; BOUNCE defaults to a hard bounce."""
    event: dict[str, Any] = {
        "id": "ev-1",
        "type": type,
        "recipient": "ann@example.com",
        "created": T0,
        "emailCampaignId": 77,
        "portalId": 62515,
        "appId": 113,
    }
    if type == "BOUNCE":
        event["category"] = "HARD_BOUNCE"
    event.update(overrides)
    return {k: v for k, v in event.items() if v is not None}


def triggers(*events: dict[str, Any]) -> list[Trigger]:
    return [parse_trigger(e, policy()) for e in events]


def run(contact: Contact, *events: dict[str, Any], now: int = NOW, pol: Policy | None = None) -> Decision:
    """decide() for `contact` after `events` (raw JSON) with the real policy."""
    p = pol or policy()
    return decide(contact, [parse_trigger(e, p) for e in events], p, now)


def keys(decision: Decision) -> list[str]:
    return [a.key for a in decision.actions]


def types(decision: Decision) -> list[str]:
    return [str(a.type) for a in decision.actions]


def tasks(decision: Decision) -> list[str]:
    return [a.params["kind"] for a in decision.actions if a.type == "create_task"]


def final_pair(contact: Contact, decision: Decision, pol: Policy | None = None) -> tuple[str | None, str | None]:
    """(status, milestone) after the decision's updates are written."""
    p = (pol or policy()).contact
    status = decision.updates.get(p.status, contact.get(p.status))
    milestone = decision.updates.get(p.milestone, contact.get(p.milestone))
    return status, milestone
