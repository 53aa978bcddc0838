"""webhooks.fastpath against the reference path (webhooks.payload), on hostile and well-formed bodies.

The endpoint routes a HubSpot body with `route_hubspot_fast` and falls back to
`Router.route_hubspot` when it answers None. So the fast path may decline any body, but when it
answers, the answer must be exactly the reference path's: the same events (keys, groups, raw
events, times), drop counts and in-body duplicates, and it must never answer for a body the
reference path refuses. Its job plans must be the ones the store would make from its events.
Pure functions, no Redis: many examples are cheap.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.strategies import delivery, encode, hubspot_body
from webhooks.fastpath import route_hubspot, route_hubspot_fast
from webhooks.payload import Routed, Router
from webhooks.store import plan_events
from webhooks.testing import hubspot_event
from worker.errors import PayloadError
from worker.settings import load_settings

ROUTER = Router(load_settings(environ={"HUBSPOT_CLIENT_SECRET": "fastpath-secret"}))
FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))


def reference(body: bytes) -> Routed | PayloadError:
    try:
        return ROUTER.route_hubspot(body)
    except PayloadError as exc:
        return exc


def assert_same_as_reference(body: bytes) -> Routed | None:
    expected = reference(body)
    fast = route_hubspot_fast(ROUTER, body)
    if fast is None:
        return None
    assert not isinstance(expected, PayloadError), f"the fast path accepted what the reference refuses: {expected}"
    assert fast == expected  # events, drops and duplicates
    assert fast.plans is not None
    plans = plan_events(fast.events)
    assert {p: (v.buckets, v.hours) for p, v in fast.plans.items()} == {
        p: (v.buckets, v.hours) for p, v in plans.items()}
    return fast


@FUZZ
@given(hubspot_body())
def test_hostile_bodies_get_the_reference_answer_or_none(body: bytes) -> None:
    assert_same_as_reference(body)


@FUZZ
@given(delivery("hubspot", max_size=30), st.randoms(use_true_random=False))
def test_deliveries_get_the_reference_answer_or_none(items: list[tuple[str, dict[str, Any]]], rnd: Any) -> None:
    events = [event for _label, event in items]
    events += [dict(events[rnd.randrange(len(events))])] * rnd.randrange(2)  # a repeat inside the body
    assert_same_as_reference(encode(events))


@FUZZ
@given(delivery("hubspot", invalid=False, max_size=30))
def test_well_formed_deliveries_take_the_fast_path(items: list[tuple[str, dict[str, Any]]]) -> None:
    """Plain HubSpot events (ASCII, nothing odd): the fast path answers for them itself."""
    events = [event for _label, event in items]
    body = json.dumps(events, separators=(",", ":")).encode()
    if not body.isascii() or b"\\u" in body:  # hostile text is allowed to take the reference path
        return
    assert assert_same_as_reference(body) is not None


def test_a_typical_delivery_takes_the_fast_path() -> None:
    events = [hubspot_event(objectId=n % 50, propertyValue=str(n)) for n in range(90)]
    events += [hubspot_event("contact.creation", objectId=n) for n in range(10)]
    body = encode(events)
    routed = assert_same_as_reference(body)
    assert routed is not None and len(routed.events) == 100


@pytest.mark.parametrize("body", [
    b'[{"portalId": true}]', b'[{"subscriptionType": 5}]', b"[1e400]", b'["\\ud800"]', b"[]", b"{}",
    b"[" * 40 + b"]" * 40, b'[{"a":1}]', b"not json",
])
def test_the_endpoint_function_words_errors_as_the_reference_does(body: bytes) -> None:
    expected = reference(body)
    if isinstance(expected, PayloadError):
        with pytest.raises(PayloadError) as raised:
            route_hubspot(ROUTER, body)
        assert str(raised.value) == str(expected)
    else:
        assert route_hubspot(ROUTER, body) == expected
