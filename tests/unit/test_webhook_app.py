"""The Flask app through test_client(): answers, validation, signatures, proxies, request logs.

No Redis here: the app gets a client for a closed port, so any test that reaches Redis by
mistake fails (503). Deliveries that need Redis are in tests/integration/test_ingest_*.py.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable
from typing import Any

import pytest
import structlog
from flask import Flask
from flask.testing import FlaskClient

from tools.redis_runtime import free_port
from webhooks import create_app
from webhooks.testing import email_event, encode, hubspot_event, signed_headers
from worker.enqueue import make_redis
from worker.errors import ConfigError
from worker.settings import Settings, load_settings

SECRET = "unit-test-client-secret"
NOW_MS = 1_764_000_000_000
URL = "http://localhost/webhooks/hubspot"
EMAIL_URL = "http://localhost/webhooks/email-events"


def make_settings(**webhooks: Any) -> Settings:
    settings = load_settings(environ={"HUBSPOT_CLIENT_SECRET": SECRET})
    return dataclasses.replace(settings, webhooks=settings.webhooks.model_copy(update=webhooks))


@pytest.fixture()
def app_factory() -> Callable[..., Flask]:
    dead = make_redis(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)

    def build(**webhooks: Any) -> Flask:
        return create_app(make_settings(**webhooks), redis=dead, clock_ms=lambda: NOW_MS)

    return build


@pytest.fixture()
def client(app_factory: Callable[..., Flask]) -> FlaskClient:
    return app_factory().test_client()


def post(client: FlaskClient, body: bytes, *, url: str = URL, secret: str = SECRET, ts: int = NOW_MS,
         headers: dict[str, str] | None = None, legacy: str | None = None, signed_url: str | None = None) -> Any:
    path = url.split("localhost", 1)[1]
    signed = signed_headers(secret=secret, url=signed_url or url, body=body, timestamp_ms=ts, legacy=legacy)
    return client.post(path, data=body, headers={**signed, **(headers or {})}, content_type="application/json")


def deal_events(n: int = 1) -> list[dict[str, Any]]:
    """Events the receiver drops (so no Redis is needed to answer them)."""
    return [hubspot_event("deal.creation") for _ in range(n)]


# -- process endpoints -------------------------------------------------------------------------------
def test_healthz(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_missing_client_secret_fails_at_startup() -> None:
    settings = load_settings(environ={})
    with pytest.raises(ConfigError, match="HUBSPOT_CLIENT_SECRET"):
        create_app(settings, redis=make_redis(f"redis://127.0.0.1:{free_port()}/0"))


def test_readyz_without_redis_is_503(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["Retry-After"]


def test_the_bench_endpoint_exists_only_when_asked(app_factory: Callable[..., Flask],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert app_factory().test_client().post("/_bench/noop", data=b"[]").status_code == 404
    monkeypatch.setenv("LIFECYCLE_BENCH", "1")
    assert app_factory().test_client().post("/_bench/noop", data=b"[]").status_code == 204


def test_wrong_method(client: FlaskClient) -> None:
    assert client.get("/webhooks/hubspot").status_code == 405


# -- signatures ----------------------------------------------------------------------------------------
def test_a_signed_delivery_of_dropped_events_is_acknowledged(client: FlaskClient) -> None:
    response = post(client, encode(deal_events(3)))
    assert response.status_code == 200
    assert response.json == {"accepted": 0, "duplicates": 0, "dropped": 3, "jobs": 0}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"secret": "someone-else"},
        {"ts": NOW_MS - 301_000},
        {"ts": NOW_MS + 301_000},
        {"signed_url": "http://localhost/webhooks/other"},
    ],
    ids=["wrong-secret", "stale", "future", "other-uri"],
)
def test_bad_signatures_get_a_generic_401(client: FlaskClient, kwargs: dict[str, Any]) -> None:
    with structlog.testing.capture_logs() as logs:
        response = post(client, encode(deal_events()), **kwargs)
    assert response.status_code == 401
    assert response.json == {"error": "unauthorized"}
    (line,) = [entry for entry in logs if entry["event"] == "webhook_request"]
    assert line["status"] == 401 and line["reason"]
    assert SECRET not in json.dumps(logs)


def test_a_tampered_body_is_401(client: FlaskClient) -> None:
    body = encode(deal_events())
    headers = signed_headers(secret=SECRET, url=URL, body=body, timestamp_ms=NOW_MS)
    response = client.post("/webhooks/hubspot", data=body.replace(b"62515", b"62516"), headers=headers)
    assert response.status_code == 401


def test_missing_signature_headers_are_401(client: FlaskClient) -> None:
    assert client.post("/webhooks/hubspot", data=encode(deal_events())).status_code == 401


def test_the_query_string_is_part_of_the_signed_uri(client: FlaskClient) -> None:
    url = "http://localhost/webhooks/hubspot?portal=62515&b=2&a=1"
    assert post(client, encode(deal_events()), url=url).status_code == 200
    assert post(client, encode(deal_events()), url=url, signed_url=URL).status_code == 401


def test_behind_a_tls_proxy_the_public_https_url_is_verified(app_factory: Callable[..., Flask]) -> None:
    public = "https://hooks.example.com/webhooks/hubspot"
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hooks.example.com", "X-Forwarded-For": "1.2.3.4"}
    body = encode(deal_events())
    trusting = app_factory(trust_proxy=True).test_client()
    assert post(trusting, body, signed_url=public, headers=forwarded).status_code == 200
    # the same request without trusting the proxy sees http://localhost: not what HubSpot signed
    assert post(app_factory().test_client(), body, signed_url=public, headers=forwarded).status_code == 401
    # a trusted proxy does not make a wrong host pass
    other = {**forwarded, "X-Forwarded-Host": "evil.example.com"}
    assert post(trusting, body, signed_url=public, headers=other).status_code == 401


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_legacy_signatures_only_when_configured(app_factory: Callable[..., Flask], version: str) -> None:
    body = encode(deal_events())
    assert post(app_factory().test_client(), body, legacy=f"{version}-only").status_code == 401
    legacy = app_factory(allow_legacy_signatures=True).test_client()
    assert post(legacy, body, legacy=f"{version}-only").status_code == 200


# -- payloads ---------------------------------------------------------------------------------------------
def _bad_bodies() -> list[tuple[str, bytes, str]]:
    ev = hubspot_event
    return [
        ("empty-array", b"[]", "no events"),
        ("empty-body", b"", "not valid JSON"),
        ("non-json", b"portalId=62515", "not valid JSON"),
        ("truncated", encode([ev()])[:-3], "not valid JSON"),
        ("object-not-array", encode(ev()), "JSON array"),
        ("string", b'"hello"', "JSON array"),
        ("too-many", encode([ev() for _ in range(101)]), "too many events: 101 > 100"),
        ("not-an-object", b"[1]", "event 0: not an object"),
        ("no-type", encode([ev(subscriptionType=None)]), "subscriptionType"),
        ("type-not-string", encode([ev(subscriptionType=7)]), "subscriptionType"),
        ("portal-string", encode([ev(), ev(portalId="62515")]), "event 1: portalId must be an integer"),
        ("no-event-id", encode([ev(eventId=None)]), "eventId must be an integer"),
        ("bool-subscription", encode([ev(subscriptionId=True)]), "subscriptionId must be an integer"),
        ("occurred-float", encode([ev(occurredAt=1.5)]), "occurredAt must be an integer"),
        ("object-id-string", encode([ev("contact.creation", objectId="101")]), "objectId must be an integer"),
        ("property-name", encode([ev(propertyName=3)]), "propertyName must be a string"),
        ("property-value-list", encode([ev(propertyValue=[1])]), "propertyValue must be a string"),
        ("change-source", encode([ev(changeSource=5)]), "changeSource must be a string"),
        ("merge-primary", encode([ev("contact.merge", primaryObjectId=None)]), "primaryObjectId"),
        ("merged-ids", encode([ev("contact.merge", mergedObjectIds=["x"])]), "mergedObjectIds"),
        ("association-type", encode([ev("contact.associationChange", associationType=None)]), "associationType"),
        ("association-from", encode([ev("contact.associationChange", fromObjectId="1")]), "fromObjectId"),
        ("association-removed", encode([ev("contact.associationChange", associationRemoved="no")]),
         "associationRemoved"),
    ]


@pytest.mark.parametrize(("body", "reason"), [(b, r) for _, b, r in _bad_bodies()],
                         ids=[i for i, _, _ in _bad_bodies()])
def test_malformed_bodies_are_400_with_a_short_reason(client: FlaskClient, body: bytes, reason: str) -> None:
    response = post(client, body)
    assert response.status_code == 400
    assert reason in response.json["error"]
    assert len(response.json["error"]) < 100


def test_the_event_cap_is_configurable(app_factory: Callable[..., Flask]) -> None:
    client = app_factory(max_events=2).test_client()
    assert post(client, encode(deal_events(2))).status_code == 200
    assert "too many events: 3 > 2" in post(client, encode(deal_events(3))).json["error"]


def test_an_oversize_body_is_413(app_factory: Callable[..., Flask]) -> None:
    client = app_factory(max_body_bytes=2_000).test_client()
    small, big = encode(deal_events(3)), encode(deal_events(20))
    assert len(small) < 2_000 < len(big)
    assert post(client, small).status_code == 200
    response = post(client, big)
    assert response.status_code == 413
    assert response.json["error"]


def test_an_oversize_chunked_body_is_413(app_factory: Callable[..., Flask]) -> None:
    client = app_factory(max_body_bytes=2_000).test_client()
    big = encode(deal_events(20))
    headers = signed_headers(secret=SECRET, url=URL, body=big, timestamp_ms=NOW_MS)
    response = client.post("/webhooks/hubspot", input_stream=io.BytesIO(big),
                           headers={**headers, "Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("events", "reason"),
    [
        ([hubspot_event("deal.propertyChange")], "unhandled_object"),
        ([hubspot_event("ticket.creation")], "unhandled_object"),
        ([hubspot_event("conversation.newMessage")], "unhandled_object"),
        ([hubspot_event("contact.somethingNew")], "unknown_type"),
        ([hubspot_event("spaceship.launch")], "unknown_type"),
        ([hubspot_event("company.creation")], "irrelevant_type"),
        ([hubspot_event(propertyName="notes_last_contacted")], "irrelevant_property"),
        ([hubspot_event(changeSource="INTEGRATION", sourceId="4242")], "echo"),
        ([hubspot_event(eventType="contact.creation", subscriptionType=None, changeSource="INTEGRATION",
                        sourceId=4242)], "echo"),
    ],
    ids=["deal", "ticket", "conversation", "unknown-contact-type", "unknown-object", "company-creation",
         "irrelevant-property", "echo", "echo-eventType-int-sourceId"],
)
def test_skipped_events_are_counted_and_acknowledged(client: FlaskClient, events: list[dict[str, Any]],
                                                     reason: str) -> None:
    response = post(client, encode(events))
    assert response.status_code == 200
    assert response.json["dropped"] == 1 and response.json["accepted"] == 0
    metrics = client.get("/metrics").data.decode()
    assert f'lifecycle_webhook_events_dropped_total{{endpoint="hubspot",reason="{reason}"}} 1.0' in metrics


def test_redis_unreachable_is_503_with_retry_after(client: FlaskClient) -> None:
    response = post(client, encode([hubspot_event()]))
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0


# -- email events ------------------------------------------------------------------------------------------
def test_email_events_accept_one_record_or_an_array(client: FlaskClient) -> None:
    one = email_event("OPEN")
    assert post(client, encode(one), url=EMAIL_URL).json == {"accepted": 0, "duplicates": 0, "dropped": 1, "jobs": 0}
    many = [email_event("CLICK"), email_event("MADE_UP")]
    response = post(client, encode(many), url=EMAIL_URL)
    assert response.status_code == 200
    metrics = client.get("/metrics").data.decode()
    assert 'lifecycle_webhook_events_dropped_total{endpoint="email_events",reason="irrelevant_type"} 2.0' in metrics
    assert 'lifecycle_webhook_events_dropped_total{endpoint="email_events",reason="unknown_type"} 1.0' in metrics


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[]", "no events"),
        (encode([email_event(recipient="nobody")]), "recipient"),
        (encode([email_event(type=None)]), "type"),
        (encode([email_event(created="yesterday")]), "created"),
        (encode([email_event(portalId="62515")]), "portalId"),
        (encode(["BOUNCE"]), "not an object"),
    ],
    ids=["empty", "recipient", "type", "created", "portal", "not-object"],
)
def test_malformed_email_events_are_400(client: FlaskClient, body: bytes, reason: str) -> None:
    response = post(client, body, url=EMAIL_URL)
    assert response.status_code == 400
    assert reason in response.json["error"]


def test_email_events_need_a_signature_too(client: FlaskClient) -> None:
    assert client.post("/webhooks/email-events", data=encode(email_event())).status_code == 401


# -- one log line per request --------------------------------------------------------------------------------
def test_one_log_line_per_request_without_secrets_or_emails(client: FlaskClient) -> None:
    body = encode([*deal_events(2), email_event("OPEN")])
    with structlog.testing.capture_logs() as logs:
        post(client, encode(deal_events(2)))
        post(client, encode(email_event("OPEN", recipient="ada@example.com")), url=EMAIL_URL)
        post(client, b"[]")
        post(client, body, secret="wrong")
        client.get("/healthz")
    lines = [entry for entry in logs if entry["event"] == "webhook_request"]
    assert [(line["path"], line["status"]) for line in lines] == [
        ("/webhooks/hubspot", 200), ("/webhooks/email-events", 200), ("/webhooks/hubspot", 400),
        ("/webhooks/hubspot", 401),
    ]
    assert lines[0]["dropped"] == 2 and lines[0]["method"] == "POST" and lines[0]["duration_ms"] >= 0
    text = json.dumps(logs)
    assert SECRET not in text and "ada@example.com" not in text
