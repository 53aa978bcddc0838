"""Parse what HubSpot sends into rules values, and say what a trigger means.

Webhook events (spec: hubspot-facts §1.1), Email Events API records (§2), contacts as the
CRM API returns them (with optional `propertiesWithHistory`), and HubSpot's datetimes.
Pure: bad input raises `TriggerError` with a one-line message.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from rules.errors import TriggerError
from rules.model import Contact, HistoryEntry, Trigger, TriggerKind
from rules.policy import Policy

SUBSCRIPTION_KINDS: Mapping[str, TriggerKind] = {
    "contact.creation": TriggerKind.CREATED,
    "contact.propertyChange": TriggerKind.PROPERTY_CHANGED,
    "contact.deletion": TriggerKind.DELETED,
    "contact.privacyDeletion": TriggerKind.DELETED,
    "contact.merge": TriggerKind.MERGED,
    "contact.associationChange": TriggerKind.ASSOCIATION_CHANGED,
    "contact.restore": TriggerKind.RECONCILE,
    # The company-side twin of a contact↔company association change: the webhook endpoint
    # files it under the contact, and it means the same as the contact-side event.
    "company.associationChange": TriggerKind.ASSOCIATION_CHANGED,
}
EMAIL_EVENT_TYPES = frozenset(
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
SELF_SOURCE = "INTEGRATION"  # changeSource / sourceType of an app's writes
UNSUBSCRIBED = "UNSUBSCRIBED"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


# -- datetimes ------------------------------------------------------------------------------------
def parse_ms(value: object) -> int | None:
    """Milliseconds since the epoch from ms (int or digits) or ISO-8601 text; None if neither."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.lstrip("-").isascii() and text.lstrip("-").isdigit():  # "²" is a digit to str.isdigit, not to int()
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return _float_ms(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MS


def _float_ms(text: str) -> int | None:
    try:
        value = float(text)  # "1764770000000.0", as some relays send it
    except ValueError:
        return None
    return int(value) if math.isfinite(value) else None


def format_ms(ms: int) -> str:
    """ISO-8601 UTC text for `ms` (for people: reasons and the CLI)."""
    try:
        return (_EPOCH + ms * _MS).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except OverflowError:
        return str(ms)


# -- events ---------------------------------------------------------------------------------------
def parse_trigger(raw: Mapping[str, Any], policy: Policy) -> Trigger:
    """One webhook event or Email Events API record as a Trigger. Raises TriggerError."""
    if not isinstance(raw, Mapping):
        raise TriggerError(f"event: must be a JSON object, got {_json_type(raw)}")
    subscription = raw.get("subscriptionType") or raw.get("eventType")
    if subscription is not None:
        return _webhook_event(raw, subscription, policy)
    if "type" in raw:
        return _email_event(raw, policy)
    raise TriggerError("event: needs 'subscriptionType' (a webhook event) or 'type' (an email event)")


def _webhook_event(raw: Mapping[str, Any], subscription: object, policy: Policy) -> Trigger:
    if not isinstance(subscription, str) or subscription not in SUBSCRIPTION_KINDS:
        known = ", ".join(SUBSCRIPTION_KINDS)
        raise TriggerError(f"subscriptionType: unknown subscription type {subscription!r} (expected one of {known})")
    kind = SUBSCRIPTION_KINDS[subscription]
    source, source_id = _text(raw, "changeSource"), _text(raw, "sourceId")
    common: dict[str, Any] = {
        "kind": kind,
        "occurred_at": _required_ms(raw, "occurredAt"),
        "change_source": source,
        "source_id": source_id,
        "by_self": source == SELF_SOURCE and source_id == policy.app_id,
        "event_key": _webhook_key(raw),
    }
    if kind is TriggerKind.PROPERTY_CHANGED:
        name = _text(raw, "propertyName")
        if name is None:
            raise TriggerError("propertyName: required for contact.propertyChange")
        return Trigger(
            contact_id=_object_id(raw, "objectId", required=True),
            property=name,
            value=_text(raw, "propertyValue"),
            **common,
        )
    if kind is TriggerKind.MERGED:
        return _merge_event(raw, common)
    if kind is TriggerKind.ASSOCIATION_CHANGED:
        return _association_event(raw, subscription, common)
    return Trigger(contact_id=_object_id(raw, "objectId", required=True), **common)


def _merge_event(raw: Mapping[str, Any], common: dict[str, Any]) -> Trigger:
    merged = raw.get("mergedObjectIds", [])
    if not isinstance(merged, list):
        raise TriggerError(f"mergedObjectIds: must be a list of ids, got {_json_type(merged)}")
    survivor = (
        _object_id(raw, "newObjectId")
        or _object_id(raw, "primaryObjectId")
        or _object_id(raw, "objectId", required=True)
    )
    ids = tuple(_id_text("mergedObjectIds", m) for m in merged)
    return Trigger(contact_id=survivor, merged_ids=ids, **common)


def _association_event(raw: Mapping[str, Any], subscription: str, common: dict[str, Any]) -> Trigger:
    """An association change seen from the contact (contact.associationChange) or from the other
    object (company.associationChange). The contact is the source of CONTACT_TO_*, the target of
    *_TO_CONTACT (e.g. COMPANY_TO_CONTACT, the company side's form of the change)."""
    kind = _text(raw, "associationType")
    contact_side = subscription.startswith("contact.")
    first, second = _object_id(raw, "fromObjectId"), _object_id(raw, "toObjectId")
    contact_key = "fromObjectId"
    if kind and kind.endswith("_TO_CONTACT") and not kind.startswith("CONTACT_"):
        first, second = second, first
        contact_key = "toObjectId"
    elif not contact_side and not (kind and kind.startswith("CONTACT_TO_")):
        raise TriggerError(f"associationType: {subscription} of {kind!r} does not name a contact")
    if contact_side:
        first = first or _object_id(raw, "objectId")  # on the company side, objectId is not the contact
    if first is None:
        raise TriggerError(f"{contact_key}: required for {subscription}" + (" (or objectId)" if contact_side else ""))
    removed = raw.get("associationRemoved") in (True, "true")
    return Trigger(contact_id=first, association_type=kind, related_id=second, association_removed=removed, **common)


def _email_event(raw: Mapping[str, Any], policy: Policy) -> Trigger:
    kind = raw.get("type")
    if not isinstance(kind, str) or (kind not in EMAIL_EVENT_TYPES and kind not in policy.health_event_types):
        raise TriggerError(
            f"type: unknown email event type {kind!r} (expected one of {', '.join(sorted(EMAIL_EVENT_TYPES))})"
        )
    event_id = _text(raw, "id")
    return Trigger(
        kind=TriggerKind.EMAIL_EVENT,
        occurred_at=_required_ms(raw, "created"),
        email=_text(raw, "recipient"),
        email_type=kind,
        email_category=_text(raw, "category"),
        campaign_id=_text(raw, "emailCampaignId"),
        unsubscribed=kind == "STATUSCHANGE" and _unsubscribes(raw),
        event_key=f"email-{event_id}" if event_id else f"email-{_digest(raw)}",
    )


def _unsubscribes(raw: Mapping[str, Any]) -> bool:
    """A STATUSCHANGE record unsubscribes in any of the three shapes HubSpot and relays use."""
    if raw.get("unsubscribed") in (True, "true"):
        return True
    if str(raw.get("portalSubscriptionStatus") or "").upper() == UNSUBSCRIBED:
        return True
    subscriptions = raw.get("subscriptions")
    if not isinstance(subscriptions, list):
        return False
    return any(isinstance(s, Mapping) and str(s.get("status") or "").upper() == UNSUBSCRIBED for s in subscriptions)


_KEY_PARTS = ("portalId", "subscriptionId", "eventId", "objectId", "occurredAt")


def _webhook_key(raw: Mapping[str, Any]) -> str:
    """Stable across redelivery: eventId alone is not unique (hubspot-facts §1.3)."""
    parts = [raw.get(k) for k in _KEY_PARTS]
    if parts[2] is None or not all(type(p) is int or _plain(p) for p in parts):
        return f"hs-{_digest(raw)}"
    key = "hs-" + "-".join("x" if p is None else str(p) for p in parts)
    name = raw.get("propertyName")
    if name is not None:
        value = raw.get("propertyValue")
        key += "-" + (_property_digest(name, value) if type(name) is str and type(value) in _CACHEABLE
                      else _digest({"name": name, "value": value})[:12])
    return key


_CACHEABLE = (str, int, type(None))


@functools.lru_cache(maxsize=4096)
def _property_digest(name: str, value: str | int | None) -> str:
    """A property event's (name, value) digest: a burst repeats the same few pairs thousands of
    times. Only str/int/None values are cached: True == 1 would share an entry with 1."""
    return _digest({"name": name, "value": value})[:12]


def _plain(value: object) -> bool:
    return (
        value is None
        or (isinstance(value, int) and not isinstance(value, bool))
        or (isinstance(value, str) and value.isalnum())
    )


# json.dumps(content, sort_keys=True, default=str, separators=(",", ":")), without building an
# encoder per call (a burst's job digests every property event's name and value).
_CANONICAL = json.JSONEncoder(sort_keys=True, default=str, separators=(",", ":"))


def _digest(raw: Mapping[str, Any]) -> str:
    content = {k: v for k, v in raw.items() if k != "attemptNumber"}  # retries bump attemptNumber
    text = _CANONICAL.encode(content)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# -- contacts -------------------------------------------------------------------------------------
def parse_contact(raw: Mapping[str, Any]) -> Contact:
    """A contact as HubSpot's CRM API returns it (`id`, `properties`, optional history)."""
    if not isinstance(raw, Mapping):
        raise TriggerError(f"contact: must be a JSON object, got {_json_type(raw)}")
    props = raw.get("properties")
    if not isinstance(props, Mapping):
        raise TriggerError('contact: has no "properties" object (expected {"id": ..., "properties": {...}})')
    contact_id = _object_id(raw, "id") or _object_id(props, "hs_object_id")
    if contact_id is None:
        raise TriggerError('contact: has no "id"')
    properties = {str(k): _scalar(f"properties.{k}", v) for k, v in props.items()}
    history_raw = raw.get("propertiesWithHistory")
    if history_raw is None:
        return Contact(contact_id, properties)
    if not isinstance(history_raw, Mapping):
        raise TriggerError(f"propertiesWithHistory: must be an object, got {_json_type(history_raw)}")
    history = {str(k): _history(str(k), v) for k, v in history_raw.items()}
    return Contact(contact_id, properties, history, has_history=True)


def _history(name: str, entries: object) -> tuple[HistoryEntry, ...]:
    where = f"propertiesWithHistory.{name}"
    if not isinstance(entries, list):
        raise TriggerError(f"{where}: must be a list, got {_json_type(entries)}")
    parsed = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise TriggerError(f"{where}[{i}]: must be an object, got {_json_type(entry)}")
        parsed.append(
            HistoryEntry(
                value=_scalar(f"{where}[{i}].value", entry.get("value")) or "",
                timestamp=_required_ms(entry, "timestamp", where=f"{where}[{i}]."),
                source_type=_text(entry, "sourceType"),
                source_id=_text(entry, "sourceId"),
            )
        )
    return tuple(sorted(parsed, key=lambda e: -e.timestamp))  # newest first, whatever the input order


# -- field helpers --------------------------------------------------------------------------------
def _scalar(where: str, value: object) -> str | None:
    """A property value as HubSpot's string form (booleans "true"/"false")."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise TriggerError(f"{where}: must be a string, number or boolean, got {_json_type(value)}")


def _text(raw: Mapping[str, Any], key: str) -> str | None:
    value = _scalar(key, raw.get(key))
    return value if value not in (None, "") else None


def _id_text(key: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip():
        raise TriggerError(f"{key}: must be an id (number or string), got {_json_type(value)} {value!r}")
    return str(value).strip()


def _object_id(raw: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = raw.get(key)
    if value is None:
        if required:
            raise TriggerError(f"{key}: required")
        return None
    return _id_text(key, value)


def _required_ms(raw: Mapping[str, Any], key: str, *, where: str = "") -> int:
    value = raw.get(key)
    ms = parse_ms(value)
    if ms is None:
        problem = "required" if value is None else f"must be ms since the epoch or ISO-8601, got {value!r}"
        raise TriggerError(f"{where}{key}: {problem}")
    return ms


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    return "a number" if isinstance(value, int | float) else type(value).__name__


# -- what a trigger means -------------------------------------------------------------------------
def health_fact(trigger: Trigger, policy: Policy) -> str | None:
    """A description when `trigger` says the address is unusable (T4), else None."""
    kind, name = trigger.email_type or "", trigger.property or ""
    if trigger.kind is TriggerKind.EMAIL_EVENT and kind in policy.health_event_types:
        categories = policy.health_event_types[kind]
        if kind == "STATUSCHANGE":
            return "an unsubscribe (STATUSCHANGE)" if trigger.unsubscribed else None
        if categories and trigger.email_category not in categories:
            return None
        return f"an email event {kind}" + (f" {trigger.email_category}" if trigger.email_category else "")
    if trigger.kind is TriggerKind.PROPERTY_CHANGED and is_health_value(policy, name, trigger.value):
        return f"{name} set to {trigger.value!r}"
    return None


def is_health_value(policy: Policy, name: str, value: str | None) -> bool:
    """True when email-health property `name` holding `value` makes the milestone dead."""
    if value in (None, ""):
        return False
    wanted = policy.health_values.get(name)
    return wanted is not None and (wanted.any or str(value).lower() in wanted.values)


def campaign_fact(trigger: Trigger, policy: Policy) -> str | None:
    """A description when `trigger` says a lead-generation campaign reached the contact (T2)."""
    if trigger.kind is TriggerKind.EMAIL_EVENT and trigger.email_type == "DELIVERED":
        ids = policy.lead_gen_campaign_ids
        if ids is not None and trigger.campaign_id not in ids:
            return None
        return f"a lead-generation email was delivered (campaign {trigger.campaign_id or 'unknown'})"
    if trigger.kind is TriggerKind.PROPERTY_CHANGED and trigger.property is not None:
        return campaign_value(policy, trigger.property, trigger.value)
    return None


def campaign_value(policy: Policy, name: str, value: str | None) -> str | None:
    """A description when property `name` holding `value` shows a campaign or sequence (T2)."""
    if name == policy.sequence_property and str(value).lower() == "true":
        return f"enrolled in a sequence ({name} is true)"
    if name in policy.delivered_properties and value not in (None, "", "0"):
        return f"{name} is {value}"
    return None
