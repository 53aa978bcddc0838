"""Parsing what HubSpot sends: webhook events, email events, contacts, datetimes (rules/triggers.py)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.errors import TriggerError
from rules.model import TriggerKind
from rules.triggers import (
    campaign_fact,
    format_ms,
    health_fact,
    parse_contact,
    parse_ms,
    parse_trigger,
)
from tests.factories import APP_ID, T0, contact_json, entry, make_email_event, make_event, policy

# -- webhook events -------------------------------------------------------------------------------
KINDS = [
    pytest.param("contact.creation", TriggerKind.CREATED, id="creation"),
    pytest.param("contact.propertyChange", TriggerKind.PROPERTY_CHANGED, id="propertyChange"),
    pytest.param("contact.deletion", TriggerKind.DELETED, id="deletion"),
    pytest.param("contact.privacyDeletion", TriggerKind.DELETED, id="privacyDeletion"),
    pytest.param("contact.merge", TriggerKind.MERGED, id="merge"),
    pytest.param("contact.associationChange", TriggerKind.ASSOCIATION_CHANGED, id="associationChange"),
    pytest.param("contact.restore", TriggerKind.RECONCILE, id="restore"),
]


@pytest.mark.parametrize(("subscription", "kind"), KINDS)
def test_every_contact_subscription_type(subscription: str, kind: TriggerKind) -> None:
    trigger = parse_trigger(make_event(subscriptionType=subscription, fromObjectId=51), policy())
    assert trigger.kind is kind and trigger.contact_id == "51" and trigger.occurred_at == T0


def test_event_type_is_read_like_subscription_type() -> None:
    raw = make_event(subscriptionType=None, eventType="contact.propertyChange")
    trigger = parse_trigger(raw, policy())
    assert trigger.property == "contact_milestone" and trigger.value == "in_review"


def test_property_change_fields() -> None:
    t = parse_trigger(make_event(propertyValue=120), policy())
    assert (t.property, t.value, t.change_source, t.source_id) == (
        "contact_milestone",
        "120",
        "CRM_UI",
        "userId:7",
    )
    assert parse_trigger(make_event(propertyValue=None), policy()).value is None  # a cleared property


SELF = [
    pytest.param("INTEGRATION", APP_ID, True, id="app-id-string"),
    pytest.param("INTEGRATION", int(APP_ID), True, id="app-id-number"),
    pytest.param("INTEGRATION", "999", False, id="another-app"),
    pytest.param("CRM_UI", APP_ID, False, id="a-person"),
    pytest.param(None, None, False, id="no-source"),
]


@pytest.mark.parametrize(("source", "source_id", "by_self"), SELF)
def test_by_self(source: str | None, source_id: Any, by_self: bool) -> None:
    assert parse_trigger(make_event(changeSource=source, sourceId=source_id), policy()).by_self is by_self


def test_app_id_comes_from_the_policy() -> None:
    other = dataclasses.replace(policy(), app_id="999")
    assert parse_trigger(make_event(changeSource="INTEGRATION", sourceId="999"), other).by_self


def test_merge_names_the_survivor() -> None:
    raw = make_event(subscriptionType="contact.merge", objectId=51, primaryObjectId=51, mergedObjectIds=[52, "53"])
    t = parse_trigger(raw, policy())
    assert t.contact_id == "51" and t.merged_ids == ("52", "53")
    assert parse_trigger({**raw, "newObjectId": 77}, policy()).contact_id == "77"


ASSOCIATIONS = [
    pytest.param("CONTACT_TO_COMPANY", 51, 9001, ("51", "9001"), id="contact-to-company"),
    pytest.param("COMPANY_TO_CONTACT", 9001, 51, ("51", "9001"), id="company-to-contact"),
    pytest.param(None, 51, 9001, ("51", "9001"), id="no-type"),
]


@pytest.mark.parametrize(("kind", "source", "target", "expected"), ASSOCIATIONS)
def test_association_change(kind: str | None, source: int, target: int, expected: tuple[str, str]) -> None:
    raw = make_event(
        subscriptionType="contact.associationChange",
        objectId=None,
        associationType=kind,
        fromObjectId=source,
        toObjectId=target,
        associationRemoved=True,
    )
    t = parse_trigger(raw, policy())
    assert (t.contact_id, t.related_id) == expected and t.association_removed and t.association_type == kind


COMPANY_SIDE = [
    pytest.param("COMPANY_TO_CONTACT", 9001, 51, id="company-to-contact"),
    pytest.param("CONTACT_TO_COMPANY", 51, 9001, id="contact-to-company"),
]


@pytest.mark.parametrize(("kind", "source", "target"), COMPANY_SIDE)
def test_company_side_association_change_is_about_the_contact(kind: str, source: int, target: int) -> None:
    # The company's twin of a contact's association change (HubSpot sends both, without objectId):
    # the webhook endpoint files it under the contact, and it means the same (docs/chaos.md, Finding 8).
    raw = make_event(subscriptionType="company.associationChange", objectId=None, associationType=kind,
                     fromObjectId=source, toObjectId=target, eventId=101, subscriptionId=10)
    t = parse_trigger(raw, policy())
    assert t.kind is TriggerKind.ASSOCIATION_CHANGED
    assert (t.contact_id, t.related_id, t.association_type, t.association_removed) == ("51", "9001", kind, False)
    twin = make_event(subscriptionType="contact.associationChange", objectId=None, associationType="CONTACT_TO_COMPANY",
                      fromObjectId=51, toObjectId=9001)
    assert parse_trigger(twin, policy()).event_key != t.event_key  # two deliveries, two events


def test_company_side_association_change_never_takes_the_company_for_the_contact() -> None:
    # objectId, when a relay adds one to a company event, is the company: it is no fallback for the contact.
    raw = make_event(subscriptionType="company.associationChange", objectId=9001,
                     associationType="COMPANY_TO_CONTACT", fromObjectId=9001, toObjectId=None)
    with pytest.raises(TriggerError, match="toObjectId: required for company.associationChange$"):
        parse_trigger(raw, policy())
    raw = make_event(subscriptionType="company.associationChange", objectId=9001, associationType="CONTACT_TO_COMPANY",
                     fromObjectId=None, toObjectId=9001)
    with pytest.raises(TriggerError, match="fromObjectId: required for company.associationChange$"):
        parse_trigger(raw, policy())


@pytest.mark.parametrize("kind", ["COMPANY_TO_DEAL", "COMPANY_TO_COMPANY", None])
def test_company_side_association_change_without_a_contact_is_rejected(kind: str | None) -> None:
    raw = make_event(subscriptionType="company.associationChange", objectId=None, associationType=kind,
                     fromObjectId=9001, toObjectId=77)
    with pytest.raises(TriggerError, match="does not name a contact"):
        parse_trigger(raw, policy())


# -- event keys -----------------------------------------------------------------------------------
def test_webhook_key_is_the_composite_and_survives_retries() -> None:
    first = parse_trigger(make_event(), policy()).event_key
    assert first.startswith(f"hs-62515-9-100-51-{T0}-")
    assert parse_trigger(make_event(attemptNumber=3), policy()).event_key == first
    assert parse_trigger(make_event(propertyValue="dead"), policy()).event_key != first  # eventId is not unique
    assert parse_trigger(make_event(occurredAt=T0 + 1), policy()).event_key != first


def _digest_as_released(content: dict[str, Any]) -> str:
    """The content hash as first released: keys are stored (owner picks, task and deal ledgers),
    so a faster way of computing it must give the very same strings."""
    import hashlib
    import json

    text = json.dumps({k: v for k, v in content.items() if k != "attemptNumber"}, sort_keys=True, default=str,
                      separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@pytest.mark.parametrize("value", ["dead", "", None, "Ünïcødé ✓", 'quo"te\\', 42, 1, True, 1.0, 1.5, "x" * 300])
def test_event_keys_are_the_released_ones(value: Any) -> None:
    keyed = parse_trigger(make_event(propertyValue=value, propertyName="lifecyclestage"), policy()).event_key
    assert keyed == f"hs-62515-9-100-51-{T0}-" + _digest_as_released({"name": "lifecyclestage", "value": value})[:12]
    raw = make_event(eventId=None, propertyValue=value, extra={"nested": [1, {"b": 2, "a": None}]})
    assert parse_trigger(raw, policy()).event_key == "hs-" + _digest_as_released(raw)


def test_key_without_event_id_is_a_content_hash() -> None:
    raw = make_event(eventId=None)
    key = parse_trigger(raw, policy()).event_key
    assert key.startswith("hs-") and key == parse_trigger({**raw, "attemptNumber": 4}, policy()).event_key
    assert parse_trigger(make_event(portalId="p:1"), policy()).event_key.count("-") == 1


def test_email_key_is_the_event_id_else_a_hash() -> None:
    assert parse_trigger(make_email_event(), policy()).event_key == "email-ev-1"
    no_id = parse_trigger(make_email_event(id=None), policy()).event_key
    assert no_id.startswith("email-") and no_id == parse_trigger(make_email_event(id=None), policy()).event_key


# -- email events ---------------------------------------------------------------------------------
EMAIL = [
    pytest.param(make_email_event("DELIVERED"), {"email_type": "DELIVERED", "campaign_id": "77"}, id="delivered"),
    pytest.param(make_email_event("BOUNCE"), {"email_category": "HARD_BOUNCE"}, id="bounce"),
    pytest.param(
        make_email_event("STATUSCHANGE", subscriptions=[{"status": "UNSUBSCRIBED"}]),
        {"unsubscribed": True},
        id="unsubscribe-list",
    ),
    pytest.param(make_email_event("STATUSCHANGE", unsubscribed=True), {"unsubscribed": True}, id="unsubscribe-flag"),
    pytest.param(
        make_email_event("STATUSCHANGE", portalSubscriptionStatus="unsubscribed"),
        {"unsubscribed": True},
        id="unsubscribe-portal",
    ),
    pytest.param(
        make_email_event("STATUSCHANGE", subscriptions=[{"status": "SUBSCRIBED"}, "junk"]),
        {"unsubscribed": False},
        id="subscribe",
    ),
    pytest.param(
        make_email_event("STATUSCHANGE", subscriptions="UNSUBSCRIBED"),
        {"unsubscribed": False},
        id="subscriptions-not-a-list",
    ),
    pytest.param(make_email_event("BOUNCE", unsubscribed=True), {"unsubscribed": False}, id="only-statuschange"),
    pytest.param(make_email_event("OPEN", created="2025-12-03T13:53:20Z"), {"occurred_at": T0}, id="iso-created"),
]


@pytest.mark.parametrize(("raw", "fields"), EMAIL)
def test_email_events(raw: dict[str, Any], fields: dict[str, Any]) -> None:
    t = parse_trigger(raw, policy())
    assert t.kind is TriggerKind.EMAIL_EVENT and t.email == "ann@example.com" and not t.by_self
    for name, value in fields.items():
        assert getattr(t, name) == value


FACTS = [
    pytest.param(make_email_event("BOUNCE"), "HARD_BOUNCE", id="hard-bounce"),
    pytest.param(make_email_event("BOUNCE", category="MAILBOX_FULL"), None, id="soft-bounce"),
    pytest.param(make_email_event("STATUSCHANGE", unsubscribed=True), "unsubscribe", id="unsubscribe"),
    pytest.param(make_email_event("STATUSCHANGE"), None, id="status-change-only"),
    pytest.param(make_email_event("SPAMREPORT"), "SPAMREPORT", id="spam"),
    pytest.param(make_email_event("DELIVERED"), None, id="delivered"),
    pytest.param(make_event(propertyName="hs_email_quarantined", propertyValue="TRUE"), "quarantined", id="prop-case"),
    pytest.param(make_event(propertyName="hs_email_hard_bounce_reason_enum", propertyValue=""), None, id="prop-empty"),
]


@pytest.mark.parametrize(("raw", "expected"), FACTS)
def test_health_fact(raw: dict[str, Any], expected: str | None) -> None:
    fact = health_fact(parse_trigger(raw, policy()), policy())
    assert (fact is None) if expected is None else (expected in (fact or ""))


def test_campaign_fact_follows_the_configured_campaign_list() -> None:
    listed = dataclasses.replace(policy(), lead_gen_campaign_ids=frozenset({"77"}))
    assert campaign_fact(parse_trigger(make_email_event("DELIVERED"), listed), listed)
    other = parse_trigger(make_email_event("DELIVERED", emailCampaignId=5), listed)
    assert campaign_fact(other, listed) is None
    assert campaign_fact(parse_trigger(make_email_event("OPEN"), listed), listed) is None
    assert campaign_fact(parse_trigger(make_event(subscriptionType="contact.creation"), listed), listed) is None


# -- bad input: one line, names the field ---------------------------------------------------------
BAD = [
    pytest.param([make_event()], "must be a JSON object, got a list", id="list"),
    pytest.param("contact.creation", "must be a JSON object, got a string", id="string"),
    pytest.param({"objectId": 1}, "needs 'subscriptionType'", id="no-type"),
    pytest.param(
        make_event(subscriptionType="company.creation"),
        "unknown subscription type 'company.creation'",
        id="unknown-subscription",
    ),
    pytest.param(make_event(subscriptionType=7), "unknown subscription type 7", id="subscription-not-text"),
    pytest.param(make_event(objectId=None), "objectId: required", id="no-object-id"),
    pytest.param(make_event(objectId=True), "objectId: must be an id", id="bool-object-id"),
    pytest.param(make_event(objectId={"id": 1}), "objectId: must be an id", id="object-object-id"),
    pytest.param(make_event(occurredAt=None), "occurredAt: required", id="no-occurred-at"),
    pytest.param(make_event(occurredAt="yesterday"), "occurredAt: must be ms since the epoch", id="bad-occurred-at"),
    pytest.param(make_event(propertyName=None), "propertyName: required", id="no-property-name"),
    pytest.param(make_event(propertyValue=[1]), "propertyValue: must be a string", id="list-value"),
    pytest.param(
        make_event(subscriptionType="contact.merge", mergedObjectIds=5),
        "mergedObjectIds: must be a list",
        id="merged-not-list",
    ),
    pytest.param(
        make_event(subscriptionType="contact.associationChange", objectId=None),
        "fromObjectId: required for contact.associationChange (or objectId)",
        id="association-without-ids",
    ),
    pytest.param(
        make_event(subscriptionType="contact.associationChange", objectId=None, associationType="COMPANY_TO_CONTACT",
                   fromObjectId=9001),
        "toObjectId: required for contact.associationChange (or objectId)",
        id="company-to-contact-without-contact",
    ),
    pytest.param(make_email_event("EXPLODED"), "unknown email event type 'EXPLODED'", id="unknown-email-type"),
    pytest.param(make_email_event(created=None), "created: required", id="no-created"),
    pytest.param({"type": None}, "unknown email event type None", id="null-type"),
]


@pytest.mark.parametrize(("raw", "message"), BAD)
def test_bad_events_raise_one_line(raw: Any, message: str) -> None:
    with pytest.raises(TriggerError, match=None) as err:
        parse_trigger(raw, policy())
    assert message in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value, ValueError)


# -- contacts -------------------------------------------------------------------------------------
def test_contact_as_hubspot_returns_it() -> None:
    raw = contact_json(contact_status="mql", hubspotscore=120, lead_gen_suppressed=False, email=None)
    contact = parse_contact(raw)
    assert contact.id == "51" and not contact.has_history
    assert dict(contact.properties) == {
        "contact_status": "mql",
        "hubspotscore": "120",
        "lead_gen_suppressed": "false",
        "email": None,
    }
    assert contact.get("email") is None and contact.get("missing") is None


def test_history_is_newest_first_with_iso_or_ms_timestamps() -> None:
    history = {
        "contact_status": [
            entry("srl", "2025-12-03T13:53:20.000Z"),
            entry("mql", str(T0 + 5), by="app"),
            entry("prospect", T0 - 5, by="app"),
            {"value": None, "timestamp": T0 - 9},
        ]
    }
    contact = parse_contact(contact_json(history=history))
    entries = contact.history["contact_status"]
    assert [e.value for e in entries] == ["mql", "srl", "prospect", ""]
    assert entries[1].timestamp == T0 and entries[0].source_type == "INTEGRATION" and entries[0].source_id == APP_ID
    assert contact.has_history


def test_empty_history_still_counts_as_read() -> None:
    assert parse_contact(contact_json(history={})).has_history
    assert not parse_contact({**contact_json(), "propertiesWithHistory": None}).has_history


def test_contact_id_falls_back_to_hs_object_id() -> None:
    assert parse_contact({"properties": {"hs_object_id": "88"}}).id == "88"


BAD_CONTACTS = [
    pytest.param({"id": "51"}, 'has no "properties"', id="no-properties"),
    pytest.param({"id": "51", "properties": []}, 'has no "properties"', id="properties-not-object"),
    pytest.param([], "must be a JSON object, got a list", id="list"),
    pytest.param({"properties": {}}, 'has no "id"', id="no-id"),
    pytest.param({"id": "1", "properties": {"a": {"b": 1}}}, "properties.a: must be a string", id="nested-value"),
    pytest.param(
        {**contact_json(), "propertiesWithHistory": []},
        "propertiesWithHistory: must be an object",
        id="history-not-object",
    ),
    pytest.param(contact_json(history={"x": {}}), "propertiesWithHistory.x: must be a list", id="entries-not-list"),
    pytest.param(
        contact_json(history={"x": ["v"]}),
        "propertiesWithHistory.x[0]: must be an object",
        id="entry-not-object",
    ),
    pytest.param(
        contact_json(history={"x": [{"value": "v"}]}),
        "propertiesWithHistory.x[0].timestamp: required",
        id="entry-without-time",
    ),
]


@pytest.mark.parametrize(("raw", "message"), BAD_CONTACTS)
def test_bad_contacts_raise_one_line(raw: Any, message: str) -> None:
    with pytest.raises(TriggerError) as err:
        parse_contact(raw)
    assert message in str(err.value) and "\n" not in str(err.value)


# -- datetimes ------------------------------------------------------------------------------------
TIMES = [
    pytest.param(T0, T0, id="int"),
    pytest.param(str(T0), T0, id="digits"),
    pytest.param(f" {T0} ", T0, id="padded"),
    pytest.param(float(T0), T0, id="float"),
    pytest.param(f"{T0}.0", T0, id="float-text"),
    pytest.param("2025-12-03T13:53:20Z", T0, id="iso-z"),
    pytest.param("2025-12-03T13:53:20.000Z", T0, id="iso-ms"),
    pytest.param("2025-12-03T14:53:20+01:00", T0, id="iso-offset"),
    pytest.param("2025-12-03T13:53:20", T0, id="iso-naive-is-utc"),
    pytest.param("-5", -5, id="negative"),
    pytest.param(None, None, id="none"),
    pytest.param(True, None, id="bool"),
    pytest.param("", None, id="empty"),
    pytest.param("soon", None, id="text"),
    pytest.param("nan", None, id="nan-text"),
    pytest.param("²", None, id="superscript-digit"),
    pytest.param(float("inf"), None, id="inf"),
    pytest.param([T0], None, id="list"),
]


@pytest.mark.parametrize(("value", "expected"), TIMES)
def test_parse_ms(value: object, expected: int | None) -> None:
    assert parse_ms(value) == expected


def test_format_ms() -> None:
    assert format_ms(T0) == "2025-12-03T13:53:20.000Z"
    assert format_ms(10**20) == str(10**20)


# -- never anything but TriggerError --------------------------------------------------------------
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
_event_keys = st.sampled_from(
    [
        "subscriptionType",
        "eventType",
        "type",
        "objectId",
        "occurredAt",
        "created",
        "propertyName",
        "propertyValue",
        "mergedObjectIds",
        "fromObjectId",
        "subscriptions",
        "changeSource",
        "sourceId",
        "eventId",
        "id",
        "properties",
        "propertiesWithHistory",
    ]
)
_values = st.one_of(
    _json,
    st.sampled_from(
        [
            "contact.merge",
            "contact.associationChange",
            "contact.propertyChange",
            "BOUNCE",
            "STATUSCHANGE",
            "51",
            T0,
        ]
    ),
)


@settings(max_examples=200, deadline=None)
@given(raw=st.one_of(_json, st.dictionaries(_event_keys, _values, max_size=8)))
def test_parsers_raise_only_trigger_errors(raw: Any) -> None:
    for parse in (lambda r: parse_trigger(r, policy()), parse_contact):
        try:
            parse(raw)
        except TriggerError as exc:
            assert "\n" not in str(exc)
