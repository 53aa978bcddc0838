"""Router: validation, routing into contacts/companies/emails, drops, and dedupe keys (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhooks.payload import Routed, Router, dedupe_key_email, dedupe_key_hubspot
from webhooks.testing import email_event, encode, hubspot_event
from worker.errors import PayloadError
from worker.settings import load_settings

SETTINGS = load_settings(environ={"HUBSPOT_CLIENT_SECRET": "s"})
ROUTER = Router(SETTINGS)


def route(*events: dict[str, Any]) -> Routed:
    return ROUTER.route_hubspot(encode(list(events)))


def targets(routed: Routed) -> list[tuple[int, str, str]]:
    return [(ev.portal_id, ev.bucket, ev.group) for ev in routed.events]


# -- where events go -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["contact.creation", "contact.deletion", "contact.privacyDeletion",
                                  "contact.restore"])
def test_contact_events_go_under_their_contact(kind: str) -> None:
    assert targets(route(hubspot_event(kind, objectId=555))) == [(62515, "contacts", "555")]


@pytest.mark.parametrize("prop", sorted(SETTINGS.policy.trigger_properties))
def test_every_trigger_property_is_kept(prop: str) -> None:
    assert targets(route(hubspot_event(propertyName=prop, objectId=7))) == [(62515, "contacts", "7")]


def test_other_properties_are_dropped() -> None:
    routed = route(hubspot_event(propertyName="notes_last_contacted"), hubspot_event(propertyName="email"))
    assert routed.events == [] and routed.dropped == {"irrelevant_property": 2}


def test_merge_goes_under_the_primary() -> None:
    routed = route(hubspot_event("contact.merge", objectId=1, primaryObjectId=900, mergedObjectIds=[901]))
    assert targets(routed) == [(62515, "contacts", "900")]


@pytest.mark.parametrize(
    ("kind", "association", "from_id", "to_id", "contact"),
    [
        ("contact.associationChange", "CONTACT_TO_COMPANY", 11, 99, "11"),
        ("contact.associationChange", "CONTACT_TO_DEAL", 11, 99, "11"),
        ("contact.associationChange", "COMPANY_TO_CONTACT", 99, 11, "11"),
        ("company.associationChange", "COMPANY_TO_CONTACT", 99, 11, "11"),
        ("company.associationChange", "CONTACT_TO_COMPANY", 11, 99, "11"),
    ],
)
def test_associations_go_under_the_contact_side(kind: str, association: str, from_id: int, to_id: int,
                                                contact: str) -> None:
    event = hubspot_event(kind, associationType=association, fromObjectId=from_id, toObjectId=to_id)
    assert targets(route(event)) == [(62515, "contacts", contact)]


@pytest.mark.parametrize("association", ["COMPANY_TO_DEAL", "CONTACT_TO_TICKET", "CONTACT_TO_CONTACT",
                                         "COMPANY_TO_COMPANY"])
def test_associations_that_do_not_matter_are_dropped(association: str) -> None:
    routed = route(hubspot_event("company.associationChange", associationType=association))
    assert routed.events == [] and routed.dropped == {"irrelevant_type": 1}


def test_worker_owned_company_properties_need_a_rollup() -> None:
    company = SETTINGS.policy.company
    routed = route(
        hubspot_event("company.propertyChange", objectId=77, propertyName=company.account_status),
        hubspot_event("company.propertyChange", objectId=78, propertyName=company.poc_contact_id),
        hubspot_event("company.propertyChange", objectId=79, propertyName="name"),
        hubspot_event("company.propertyChange", objectId=80, propertyName=company.account_status,
                      changeSource="INTEGRATION", sourceId="4242"),
        hubspot_event("company.merge", objectId=81, primaryObjectId=82),
    )
    assert targets(routed) == [(62515, "companies", "77"), (62515, "companies", "78"),
                               (62515, "companies", "82")]
    assert routed.dropped == {"irrelevant_property": 1, "echo": 1}


@pytest.mark.parametrize(
    ("source", "source_id", "echo"),
    [
        ("INTEGRATION", "4242", True),
        ("INTEGRATION", 4242, True),
        ("INTEGRATION", "appId:4242", True),
        ("INTEGRATION", "4243", False),
        ("INTEGRATION", None, False),
        ("CRM_UI", "4242", False),
        ("API", "4242", False),
    ],
)
def test_echoes_of_this_apps_writes(source: str, source_id: Any, echo: bool) -> None:
    routed = route(hubspot_event(changeSource=source, sourceId=source_id))
    assert (routed.dropped == {"echo": 1}) is echo
    assert len(routed.events) == (0 if echo else 1)


def test_the_app_id_comes_from_settings() -> None:
    other = Router(load_settings(environ={"HUBSPOT_CLIENT_SECRET": "s", "HUBSPOT_APP_ID": "777"}))
    body = encode([hubspot_event(changeSource="INTEGRATION", sourceId="777"),
                   hubspot_event(changeSource="INTEGRATION", sourceId="4242")])
    routed = other.route_hubspot(body)
    assert routed.dropped == {"echo": 1} and len(routed.events) == 1


def test_event_type_is_accepted_as_well_as_subscription_type() -> None:
    routed = route(hubspot_event(subscriptionType=None, eventType="contact.creation", objectId=3))
    assert targets(routed) == [(62515, "contacts", "3")]


def test_events_keep_their_portal_and_raw_content() -> None:
    a = hubspot_event(portalId=1, objectId=5, extraField={"kept": True})
    b = hubspot_event(portalId=2, objectId=5)
    routed = route(a, b)
    assert targets(routed) == [(1, "contacts", "5"), (2, "contacts", "5")]
    assert routed.events[0].event == a


# -- dedupe keys ----------------------------------------------------------------------------------------------
def test_redelivery_attempts_share_a_key() -> None:
    event = hubspot_event()
    assert dedupe_key_hubspot({**event, "attemptNumber": 3}) == dedupe_key_hubspot(event)


@pytest.mark.parametrize(
    "change",
    [{"portalId": 1}, {"subscriptionId": 2}, {"eventId": 3}, {"objectId": 4}, {"occurredAt": 5},
     {"propertyName": "contact_status"}, {"propertyValue": "121"}],
)
def test_every_composite_field_distinguishes_events(change: dict[str, Any]) -> None:
    event = hubspot_event()
    assert dedupe_key_hubspot({**event, **change}) != dedupe_key_hubspot(event)


def test_association_fields_distinguish_events() -> None:
    event = hubspot_event("contact.associationChange")
    removed = {**event, "associationRemoved": True}
    assert route(event).events[0].key != route(removed).events[0].key


def test_shared_event_id_different_events_are_both_kept() -> None:
    a = hubspot_event(eventId=42, objectId=1)
    b = hubspot_event(eventId=42, objectId=2)
    c = hubspot_event(eventId=42, objectId=1, propertyValue="300")
    routed = route(a, b, c)
    assert len(routed.events) == 3 and routed.duplicates == 0


def test_repeats_inside_one_body_are_duplicates() -> None:
    event = hubspot_event()
    routed = route(event, {**event, "attemptNumber": 1}, event)
    assert len(routed.events) == 1 and routed.duplicates == 2


# -- email events ---------------------------------------------------------------------------------------------
def test_email_events_are_grouped_by_lowercased_recipient() -> None:
    body = encode([email_event("BOUNCE", recipient="Ada@Example.COM"),
                   email_event("DELIVERED", recipient=" ada@example.com "),
                   email_event("SPAMREPORT", recipient="bob@example.com", portalId=None),
                   email_event("STATUSCHANGE", recipient="bob@example.com", portalId=7)])
    routed = ROUTER.route_email(body)
    assert targets(routed) == [(62515, "emails", "ada@example.com"), (62515, "emails", "ada@example.com"),
                               (SETTINGS.portal_id, "emails", "bob@example.com"), (7, "emails", "bob@example.com")]


def test_email_event_types_the_rules_do_not_read_are_dropped() -> None:
    body = encode([email_event(kind) for kind in ("OPEN", "CLICK", "SENT", "PROCESSED", "NOT_A_TYPE")])
    routed = ROUTER.route_email(body)
    assert routed.events == [] and routed.dropped == {"irrelevant_type": 4, "unknown_type": 1}


def test_email_dedupe_by_id_else_content() -> None:
    event = email_event(id="abc")
    assert dedupe_key_email(event, 1) == dedupe_key_email({**event, "appName": "x"}, 1)
    assert dedupe_key_email(event, 1) != dedupe_key_email({**event, "created": 1}, 1)
    no_id = email_event(id=None)
    assert dedupe_key_email(no_id, 1) == dedupe_key_email(dict(reversed(list(no_id.items()))), 1)
    assert dedupe_key_email(no_id, 1) != dedupe_key_email({**no_id, "category": "SPAM"}, 1)


# -- robustness -------------------------------------------------------------------------------------------------
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=30,
)
_fieldy = st.fixed_dictionaries(
    {},
    optional={
        "subscriptionType": st.sampled_from(["contact.creation", "contact.propertyChange", "contact.merge",
                                             "company.associationChange", "deal.creation", "x"]) | _json,
        "portalId": st.integers() | _json, "eventId": st.integers() | _json, "subscriptionId": st.integers(),
        "occurredAt": st.integers() | _json, "objectId": st.integers() | _json,
        "propertyName": st.sampled_from(["hubspotscore", "x"]) | _json, "propertyValue": _json,
        "changeSource": st.sampled_from(["INTEGRATION", "CRM_UI"]) | _json, "sourceId": _json,
        "primaryObjectId": st.integers() | _json, "mergedObjectIds": _json,
        "associationType": st.sampled_from(["CONTACT_TO_COMPANY", "A_TO_B"]) | _json,
        "fromObjectId": st.integers(), "toObjectId": st.integers() | _json,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_fieldy, max_size=5) | _json)
def test_any_json_is_routed_or_refused_with_a_payload_error(data: Any) -> None:
    body = json.dumps(data).encode()
    for router_call in (ROUTER.route_hubspot, ROUTER.route_email):
        try:
            routed = router_call(body)
        except PayloadError:
            continue
        assert all(len(ev.key) == 32 for ev in routed.events)
        assert len(routed.events) + routed.total_dropped + routed.duplicates == len(data if isinstance(data, list)
                                                                                   else [data])


@given(st.integers(0, 2**62), st.integers(0, 2**62), st.text(max_size=30) | st.none() | st.integers())
def test_the_inlined_property_change_key_is_the_documented_composite(event_id: int, obj: int, value: Any) -> None:
    event = hubspot_event(eventId=event_id, objectId=obj, propertyValue=value)
    (routed,) = route(event).events
    assert routed.key == dedupe_key_hubspot(event)
