"""Property-based fuzzing of POST /webhooks/hubspot and /webhooks/email-events (issue 7, scenario 6).

Through Flask's test client, against a private real Redis (flushed before every example):
  (a) validly signed hostile bodies: never 5xx, never 401; a 2xx or 4xx with a short JSON body;
      a 4xx leaves Redis empty, a 2xx stores exactly the jobs and ledger entries it reports;
  (b) anything not validly signed: 401 {"error": "unauthorized"}, Redis untouched, and the log
      line names neither the secret nor the expected signature;
  (c) valid events mixed with others, as docs/webhooks.md (steps 3 and 4) documents: one
      malformed event makes the whole delivery 400 (the reason names the first bad event) and
      nothing is stored; unknown types, unhandled objects, irrelevant properties and echoes are
      dropped and the rest is accepted (200), each valid event in exactly one job;
  (d) idempotence: a delivery posted again (verbatim, or redelivered in another order with a new
      attemptNumber and timestamp, with new events mixed in) enqueues nothing twice.

Examples per property are sized for ~30 s in `make test`; set LIFECYCLE_FUZZ_SCALE=10 for a
deeper local run. With CI set, runs are derandomized (and use no example database), so a CI
failure reproduces. The bugs fuzzing found (a unicode-digit timestamp, lone surrogates, deep
nesting: each a 500) are fixed; their reproducers stay at the end as regression tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rq.job import Job
from rq.serializers import JSONSerializer

from tests.fuzz.strategies import (
    Item,
    any_body,
    deep_json,
    delivery,
    email_body,
    encode,
    forge,
    hubspot_body,
    other_body,
    signature_attack,
)
from tools.redis_runtime import RedisServer
from webhooks import create_app
from webhooks.signature import HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_V3, HEADER_VERSION, sign_v1, sign_v2, sign_v3
from webhooks.testing import email_event, hubspot_event, signed_headers
from worker.enqueue import ledger_entries
from worker.settings import Settings, load_settings

SECRET = "fuzz-client-secret"
NOW_MS = 1_764_000_000_000
HOST = "http://localhost"
HUBSPOT, EMAIL = "/webhooks/hubspot", "/webhooks/email-events"
PATHS = {"hubspot": HUBSPOT, "email": EMAIL}
QUEUE_KEY = "rq:queue:hubspot"
MAX_ANSWER_BYTES = 256
BASE = load_settings(environ={"HUBSPOT_CLIENT_SECRET": SECRET})
MAX_AGE_MS = BASE.webhooks.signature_max_age_s * 1000
MAX_BODY = BASE.webhooks.max_body_bytes

CI = bool(os.environ.get("CI"))
SCALE = float(os.environ.get("LIFECYCLE_FUZZ_SCALE", "1"))


def fuzz(examples: int) -> settings:
    """Hypothesis settings for one property: `examples` (times LIFECYCLE_FUZZ_SCALE), no deadline,
    reproducible in CI."""
    extra: dict[str, Any] = {"derandomize": True, "database": None} if CI else {}
    return settings(
        max_examples=max(1, int(examples * SCALE)), deadline=None, print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
                               HealthCheck.filter_too_much],
        **extra,
    )


# -- fixtures: one private Redis and two apps for the module ----------------------------------------------
def make_settings(**webhooks: Any) -> Settings:
    return dataclasses.replace(BASE, webhooks=BASE.webhooks.model_copy(update=webhooks))


@pytest.fixture(scope="module")
def conn() -> Any:
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        try:
            yield client
        finally:
            client.close()


def _app(conn: redis.Redis, **webhooks: Any) -> Flask:
    return create_app(make_settings(**webhooks), redis=conn, clock_ms=lambda: NOW_MS)


@pytest.fixture(scope="module")
def client(conn: redis.Redis) -> FlaskClient:
    return _app(conn).test_client()


@pytest.fixture(scope="module")
def legacy_client(conn: redis.Redis) -> FlaskClient:
    return _app(conn, allow_legacy_signatures=True).test_client()


# -- helpers --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Answer:
    status: int
    body: bytes
    log: str

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def send(client: FlaskClient, path: str, body: bytes, headers: Any) -> Answer:
    """POST one request; the app's log output for it is captured too."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        response = client.post(path, data=body, headers=headers, content_type="application/json")
    return Answer(response.status_code, response.get_data(), out.getvalue())


def post_signed(client: FlaskClient, path: str, body: bytes, *, ts: int = NOW_MS) -> Answer:
    return send(client, path, body, signed_headers(secret=SECRET, url=HOST + path, body=body, timestamp_ms=ts))


def ledger_size(conn: redis.Redis) -> int:
    return len(ledger_entries(conn))


def queued_events(conn: redis.Redis) -> list[dict[str, Any]]:
    """Every event in every queued job, in no particular order."""
    events: list[dict[str, Any]] = []
    for job_id in conn.lrange(QUEUE_KEY, 0, -1):
        payload = Job.fetch(job_id.decode(), connection=conn, serializer=JSONSerializer).args[0]
        for bucket in ("contacts", "companies", "emails"):
            for group in payload[bucket].values():
                events.extend(group)
    return events


def canonical(events: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(e, sort_keys=True) for e in events)


def assert_short_json(answer: Answer) -> Any:
    assert len(answer.body) <= MAX_ANSWER_BYTES, answer.body[:300]
    return answer.json


def assert_consistent(conn: redis.Redis, answer: Answer) -> None:
    """2xx: Redis holds exactly what the answer reports; 4xx: Redis holds nothing at all."""
    data = assert_short_json(answer)
    if 200 <= answer.status < 300:
        assert set(data) == {"accepted", "duplicates", "dropped", "jobs"}
        assert conn.llen(QUEUE_KEY) == data["jobs"]
        assert ledger_size(conn) == data["accepted"]
    else:
        assert set(data) == {"error"} and isinstance(data["error"], str) and data["error"]
        assert conn.dbsize() == 0, f"a {answer.status} left keys in Redis: {conn.keys('*')[:5]}"


def assert_clean_log(answer: Answer, *secrets: str) -> None:
    lines = [line for line in answer.log.splitlines() if line.strip()]
    assert len(lines) == 1, answer.log[:500]
    record = json.loads(lines[0])
    assert record["event"] == "webhook_request" and record["status"] == answer.status
    for secret in (SECRET, *secrets):
        if secret:
            assert secret not in lines[0]


# -- (a) validly signed hostile bodies -------------------------------------------------------------------------
@fuzz(400)
@given(target=any_body())
def test_signed_hostile_bodies_get_a_short_2xx_or_4xx_and_4xx_stores_nothing(
    client: FlaskClient, conn: redis.Redis, target: tuple[str, bytes]
) -> None:
    path, body = target
    conn.flushdb()
    answer = post_signed(client, path, body)
    assert answer.status in (200, 400, 413), (answer.status, answer.body[:200])
    assert_consistent(conn, answer)
    assert_clean_log(answer)
    if answer.status == 413:
        assert len(body) > MAX_BODY


@pytest.mark.parametrize("path", [HUBSPOT, EMAIL])
@pytest.mark.parametrize(("extra", "status"), [(0, 200), (1, 413)])
def test_the_body_limit_is_exact(client: FlaskClient, conn: redis.Redis, path: str, extra: int, status: int) -> None:
    """A body of exactly webhooks.max_body_bytes is read; one byte more is 413 (JSON padded with spaces)."""
    conn.flushdb()
    event = hubspot_event("contact.creation") if path == HUBSPOT else email_event("BOUNCE")
    body = encode([event])
    body += b" " * (MAX_BODY + extra - len(body))
    answer = post_signed(client, path, body)
    assert answer.status == status
    assert_consistent(conn, answer)


# -- (b) anything not validly signed -------------------------------------------------------------------------
def _legit_or_hostile(endpoint: str) -> st.SearchStrategy[bytes]:
    legit = delivery(endpoint, invalid=False).map(lambda items: encode([ev for _, ev in items]))
    hostile = hubspot_body() if endpoint == "hubspot" else email_body()
    return st.one_of(legit, hostile).filter(lambda b: len(b) <= MAX_BODY)


forgeries = st.sampled_from(["hubspot", "email"]).flatmap(
    lambda e: st.tuples(st.just(PATHS[e]), _legit_or_hostile(e), signature_attack(HOST + PATHS[e]))
)


@fuzz(400)
@given(case=forgeries)
def test_anything_not_validly_signed_is_401_and_stores_nothing(
    client: FlaskClient, conn: redis.Redis, case: tuple[str, bytes, tuple[Any, ...]]
) -> None:
    path, body, attack = case
    conn.flushdb()
    query, headers = forge(attack, secret=SECRET, url=HOST + path, body=body, now_ms=NOW_MS, max_age_ms=MAX_AGE_MS)
    answer = send(client, path + query, body, headers)
    assert answer.status == 401, (attack, answer.status, answer.body[:200])
    assert answer.json == {"error": "unauthorized"}
    assert conn.dbsize() == 0
    good = signed_headers(secret=SECRET, url=HOST + path, body=body, timestamp_ms=NOW_MS)[HEADER_V3]
    assert_clean_log(answer, good)


header_text = st.text(st.characters(max_codepoint=0xFF, exclude_characters="\r\n"), max_size=20)
legacy_attacks = st.one_of(
    st.tuples(st.sampled_from(["v1", "v2"]), st.just("wrong_secret"), header_text),
    st.tuples(st.sampled_from(["v1", "v2"]), st.just("truncated"), st.integers(0, 63)),
    st.tuples(st.sampled_from(["v1", "v2"]), st.just("other_body"),
              st.sampled_from(["append", "prefix", "drop_last", "flip", "empty"])),
    st.tuples(st.just("v2"), st.just("other_uri"), st.sampled_from([HOST + "/x", "https://localhost/webhooks/hubspot",
                                                                     HOST + "/webhooks/hubspot?a=1"])),
    st.tuples(st.just("v2"), st.just("other_method"), st.sampled_from(["GET", "PUT"])),
    st.tuples(header_text.filter(lambda v: v.strip().lower() not in ("v1", "v2")), st.just("version"),
              st.just(0)),
    st.tuples(st.sampled_from(["v1", "v2"]), st.just("missing_version"), st.just(0)),
)


@fuzz(120)
@given(body=hubspot_body().filter(lambda b: len(b) <= MAX_BODY), attack=legacy_attacks)
def test_with_legacy_signatures_on_bad_v1_v2_are_401(
    legacy_client: FlaskClient, conn: redis.Redis, body: bytes, attack: tuple[str, str, Any]
) -> None:
    version, name, param = attack
    url = HOST + HUBSPOT
    if version == "v1" or name == "version":
        sig = sign_v1(secret=SECRET, body=body)
    else:
        sig = sign_v2(secret=SECRET, method="POST", uri=url, body=body)
    if name == "wrong_secret":
        secret = param if param != SECRET else SECRET + "x"
        sig = (sign_v1(secret=secret, body=body) if version == "v1"
               else sign_v2(secret=secret, method="POST", uri=url, body=body))
    elif name == "truncated":
        sig = sig[:param]
    elif name == "other_body":
        other = other_body(body, param)
        sig = (sign_v1(secret=SECRET, body=other) if version == "v1"
               else sign_v2(secret=SECRET, method="POST", uri=url, body=other))
    elif name == "other_uri":
        sig = sign_v2(secret=SECRET, method="POST", uri=param, body=body)
    elif name == "other_method":
        sig = sign_v2(secret=SECRET, method=param, uri=url, body=body)
    headers = {HEADER_SIGNATURE: sig, HEADER_VERSION: version}
    if name == "missing_version":
        del headers[HEADER_VERSION]
    conn.flushdb()
    answer = send(legacy_client, HUBSPOT, body, headers)
    assert answer.status == 401, (attack, answer.status, answer.body[:200])
    assert conn.dbsize() == 0


@pytest.mark.parametrize(("offset_ms", "status"), [
    (-MAX_AGE_MS, 200), (-MAX_AGE_MS - 1, 401), (MAX_AGE_MS, 200), (MAX_AGE_MS + 1, 401),
])
@pytest.mark.parametrize("path", [HUBSPOT, EMAIL])
def test_the_timestamp_window_is_five_minutes_both_ways(
    client: FlaskClient, conn: redis.Redis, path: str, offset_ms: int, status: int
) -> None:
    conn.flushdb()
    event = hubspot_event("contact.creation") if path == HUBSPOT else email_event("BOUNCE")
    answer = post_signed(client, path, encode([event]), ts=NOW_MS + offset_ms)
    assert answer.status == status
    assert_consistent(conn, answer)


# -- (c) valid events mixed with invalid or skipped ones --------------------------------------------------------
mixed = st.sampled_from(["hubspot", "email"]).flatmap(lambda e: st.tuples(st.just(e), delivery(e), st.booleans()))


@fuzz(200)
@given(case=mixed)
def test_one_bad_event_fails_the_delivery_and_skipped_ones_are_dropped(
    client: FlaskClient, conn: redis.Redis, case: tuple[str, list[Item], bool]
) -> None:
    endpoint, items, ascii_only = case
    events = [ev for _, ev in items]
    single = endpoint == "email" and len(events) == 1 and ascii_only  # email takes one bare object too
    conn.flushdb()
    answer = post_signed(client, PATHS[endpoint], encode(events[0] if single else events, ascii_only))
    assert_consistent(conn, answer)
    labels = [label for label, _ in items]
    if "invalid" in labels:
        assert answer.status == 400
        assert answer.json["error"].startswith(f"event {labels.index('invalid')}: ")
        return
    valid = [ev for label, ev in items if label == "valid"]
    portals = {ev.get("portalId", BASE.portal_id) for ev in valid}
    assert answer.status == 200
    assert answer.json == {"accepted": len(valid), "duplicates": 0, "dropped": labels.count("skip"),
                           "jobs": len(portals)}
    assert canonical(queued_events(conn)) == canonical(valid)


# -- (d) idempotence --------------------------------------------------------------------------------------------
redeliveries = st.sampled_from(["hubspot", "email"]).flatmap(
    lambda e: st.tuples(st.just(e), delivery(e, invalid=False, max_size=8),
                        delivery(e, invalid=False, min_size=0, max_size=8, first_id=1_000), st.randoms())
)


@fuzz(150)
@given(case=redeliveries)
def test_a_delivery_posted_again_enqueues_nothing_twice(
    client: FlaskClient, conn: redis.Redis, case: tuple[str, list[Item], list[Item], Any]
) -> None:
    endpoint, first, more, rnd = case
    path = PATHS[endpoint]
    conn.flushdb()
    body = encode([ev for _, ev in first])
    headers = signed_headers(secret=SECRET, url=HOST + path, body=body, timestamp_ms=NOW_MS)
    answer = send(client, path, body, headers)
    n_first = sum(1 for label, _ in first if label == "valid")
    assert answer.status == 200 and answer.json["accepted"] == n_first

    verbatim = send(client, path, body, headers)  # a replay of the very same request, inside the window
    assert verbatim.status == 200
    assert verbatim.json == {"accepted": 0, "duplicates": n_first, "dropped": answer.json["dropped"], "jobs": 0}
    jobs_after_first = conn.llen(QUEUE_KEY)

    # HubSpot's redelivery: same events, next attemptNumber, another order, new ones mixed in.
    redelivered = [({**ev, "attemptNumber": ev.get("attemptNumber", 0) + 1} if endpoint == "hubspot" else ev)
                   for _, ev in first] + [ev for _, ev in more]
    rnd.shuffle(redelivered)
    again = post_signed(client, path, encode(redelivered), ts=NOW_MS + 60_000)
    n_more = sum(1 for label, _ in more if label == "valid")
    assert again.status == 200
    assert again.json["accepted"] == n_more and again.json["duplicates"] == n_first
    if n_more == 0:
        assert conn.llen(QUEUE_KEY) == jobs_after_first

    queued = queued_events(conn)
    key = "eventId" if endpoint == "hubspot" else "id"
    ids = [ev[key] for ev in queued]
    assert len(ids) == len(set(ids)) == n_first + n_more  # every valid event in exactly one job
    assert ledger_size(conn) == n_first + n_more


# -- bugs fuzzing found, fixed: their reproducers stay as regression tests -------------------------
@pytest.mark.parametrize("timestamp", ["\u00b2", "\u00b9\u00b3", "1764000000000\u00b2"])
def test_a_unicode_digit_timestamp_is_401(client: FlaskClient, conn: redis.Redis, timestamp: str) -> None:
    conn.flushdb()
    body = encode([hubspot_event("contact.creation")])
    signature = sign_v3(secret=SECRET, method="POST", uri=HOST + HUBSPOT, body=body, timestamp=timestamp)
    answer = send(client, HUBSPOT, body, {HEADER_V3: signature, HEADER_TIMESTAMP: timestamp})
    assert answer.status == 401
    assert conn.dbsize() == 0


def _surrogate_bodies() -> list[tuple[str, bytes]]:
    change = encode([hubspot_event(propertyName="hubspotscore", propertyValue="@S@")])
    email = encode(email_event("BOUNCE", id="@S@"))
    no_id = encode(email_event("BOUNCE", id=None, subject="@S@"))
    return [
        (HUBSPOT, change.replace(b"@S@", b"\\ud800")),  # lone high surrogate, escaped
        (HUBSPOT, change.replace(b"@S@", b"\xed\xb0\x80")),  # lone low surrogate as raw (CESU-8) bytes
        (EMAIL, email.replace(b"@S@", b"\\udc00x")),
        (EMAIL, no_id.replace(b"@S@", b"\\ud83d")),  # half an emoji
    ]


@pytest.mark.parametrize(("path", "body"), _surrogate_bodies(), ids=["hubspot-escaped", "hubspot-raw", "email-id",
                                                                     "email-content-hash"])
def test_lone_surrogates_are_answered_without_a_5xx(client: FlaskClient, conn: redis.Redis, path: str,
                                                     body: bytes) -> None:
    conn.flushdb()
    answer = post_signed(client, path, body)
    assert answer.status in (200, 400)
    assert_consistent(conn, answer)


def _deep_bodies() -> list[tuple[str, bytes]]:
    nested = deep_json(1_000)
    hub = encode([hubspot_event("contact.creation", extra="@D@")])
    email = encode(email_event("BOUNCE", extra="@D@"))
    no_id = encode(email_event("BOUNCE", id=None, extra="@D@"))
    return [(p, b.replace(b'"@D@"', nested)) for p, b in ((HUBSPOT, hub), (EMAIL, email), (EMAIL, no_id))]


@pytest.mark.parametrize(("path", "body"), _deep_bodies(), ids=["hubspot", "email", "email-content-hash"])
def test_deeply_nested_values_are_answered_without_a_5xx(client: FlaskClient, conn: redis.Redis, path: str,
                                                         body: bytes) -> None:
    conn.flushdb()
    answer = post_signed(client, path, body)
    assert answer.status in (200, 400)
    assert_consistent(conn, answer)
