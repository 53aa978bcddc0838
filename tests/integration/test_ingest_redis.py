"""Signed deliveries against a real Redis: jobs, payload shape, dedupe ledger, metrics."""

from __future__ import annotations

import dataclasses
import json
import threading
import zlib
from collections.abc import Callable
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from rq import Queue, Retry
from rq.job import Job
from rq.serializers import JSONSerializer

from webhooks import create_app
from webhooks.testing import email_event, encode, hubspot_event, signed_headers
from worker.enqueue import JOB_FUNC, LEDGER_PREFIX, job_id_for, ledger_entries
from worker.jobclass import LifecycleJob
from worker.settings import Settings, load_settings

pytestmark = pytest.mark.integration

SECRET = "integration-client-secret"
NOW_MS = 1_764_000_000_000
URL = "http://localhost/webhooks/hubspot"
EMAIL_URL = "http://localhost/webhooks/email-events"


def make_settings(**webhooks: Any) -> Settings:
    settings = load_settings(environ={"HUBSPOT_CLIENT_SECRET": SECRET})
    return dataclasses.replace(settings, webhooks=settings.webhooks.model_copy(update=webhooks))


@pytest.fixture()
def app(redis_conn: redis.Redis) -> Flask:
    return create_app(make_settings(), redis=redis_conn, clock_ms=lambda: NOW_MS)


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def post(client: FlaskClient, events: Any, *, url: str = URL) -> Any:
    body = encode(events)
    headers = signed_headers(secret=SECRET, url=url, body=body, timestamp_ms=NOW_MS)
    return client.post(url.split("localhost", 1)[1], data=body, headers=headers)


def queued_jobs(conn: redis.Redis) -> list[Job]:
    queue = Queue("hubspot", connection=conn, serializer=JSONSerializer)
    return [Job.fetch(job_id, connection=conn, serializer=JSONSerializer) for job_id in queue.job_ids]


def ledger(conn: redis.Redis) -> dict[str, str]:
    return ledger_entries(conn)


# -- one job per portal, with the contract's payload -------------------------------------------------------
def test_a_signed_delivery_becomes_one_job_per_portal(client: FlaskClient, redis_conn: redis.Redis) -> None:
    a1 = hubspot_event("contact.creation", objectId=101)
    a2 = hubspot_event(objectId=101, propertyName="contact_milestone", propertyValue="qualified")
    a3 = hubspot_event(objectId=102, propertyName="hubspotscore", propertyValue="150")
    a4 = hubspot_event("contact.merge", objectId=103, primaryObjectId=104, mergedObjectIds=[103])
    a5 = hubspot_event("company.associationChange", associationType="COMPANY_TO_CONTACT", fromObjectId=9,
                       toObjectId=105)
    a6 = hubspot_event("company.propertyChange", objectId=9, propertyName="account_status", propertyValue="x")
    b1 = hubspot_event("contact.deletion", portalId=777, objectId=201)
    dropped = [hubspot_event("deal.creation"), hubspot_event(propertyName="firstname"),
               hubspot_event(changeSource="INTEGRATION", sourceId="4242")]
    response = post(client, [a1, b1, a2, *dropped, a3, a4, a5, a6])
    assert response.status_code == 200
    assert response.json == {"accepted": 7, "duplicates": 0, "dropped": 3, "jobs": 2}

    jobs = {job.args[0]["portal_id"]: job for job in queued_jobs(redis_conn)}
    assert set(jobs) == {62515, 777}
    job = jobs[62515]
    assert job.func_name == JOB_FUNC and job.kwargs == {} and len(job.args) == 1
    assert job.args[0] == {
        "v": 1, "portal_id": 62515, "received_at": NOW_MS, "source": "webhook",
        "contacts": {"101": [a1, a2], "102": [a3], "104": [a4], "105": [a5]},
        "companies": {"9": [a6]},
        "emails": {},
    }
    assert jobs[777].args[0]["contacts"] == {"201": [b1]}
    settings = make_settings()
    assert job.timeout == settings.worker.job_timeout_s
    assert job.failure_ttl == settings.worker.failure_ttl_s
    assert job.result_ttl == settings.worker.result_ttl_s
    assert job.retries_left == len(settings.worker.retry_intervals_s)  # as worker.jobs.enqueue_payload
    assert job.retry_intervals == list(settings.worker.retry_intervals_s)
    assert job.origin == "hubspot" and job.get_status() == "queued"


def test_the_job_hash_is_the_one_rq_writes(client: FlaskClient, redis_conn: redis.Redis) -> None:
    """The store fills RQ's own enqueue commands in (recorded once per process) instead of building
    a Job per delivery: the hash must hold the fields RQ's Queue.enqueue_job writes for the same
    job, with the same values (the data compared decoded: RQ's serializer spaces its JSON), and the
    worker's job class must read it."""
    events = [hubspot_event(objectId=n % 3) for n in range(6)] + [hubspot_event("contact.creation", objectId=9)]
    assert post(client, events).status_code == 200
    (raw_id,) = redis_conn.lrange("rq:queue:hubspot", 0, -1)
    job_id = raw_id.decode()
    ours = redis_conn.hgetall(f"rq:job:{job_id}")
    fetched = LifecycleJob.fetch(job_id, connection=redis_conn, serializer=JSONSerializer)
    assert fetched.func_name == JOB_FUNC and fetched.args[0]["contacts"]["9"] == [events[-1]]

    redis_conn.flushdb()
    worker = make_settings().worker
    intervals = list(worker.retry_intervals_s)
    queue = Queue("hubspot", connection=redis_conn, serializer=JSONSerializer)
    job = queue.create_job(JOB_FUNC, args=fetched.args, job_id=job_id, timeout=worker.job_timeout_s,
                           result_ttl=worker.result_ttl_s, failure_ttl=worker.failure_ttl_s,
                           retry=Retry(max=len(intervals), interval=intervals), description=fetched.description)
    job.created_at = fetched.created_at
    queue.enqueue_job(job)
    theirs = redis_conn.hgetall(f"rq:job:{job_id}")
    assert set(ours) == set(theirs)
    assert json.loads(zlib.decompress(ours.pop(b"data"))) == json.loads(zlib.decompress(theirs.pop(b"data")))
    ours.pop(b"enqueued_at"), theirs.pop(b"enqueued_at")  # RQ stamps its own enqueue
    assert ours == theirs
    assert redis_conn.lrange("rq:queue:hubspot", 0, -1) == [raw_id]
    assert redis_conn.smembers("rq:queues") == {b"rq:queue:hubspot"}


def test_job_ids_follow_the_dedupe_keys(client: FlaskClient, redis_conn: redis.Redis) -> None:
    events = [hubspot_event(objectId=n) for n in range(5)]
    post(client, events)
    keys = sorted(ledger(redis_conn))
    (job,) = queued_jobs(redis_conn)
    assert job.id == job_id_for(62515, keys)
    assert job.id.startswith("hs-62515-") and len(job.id) == len("hs-62515-") + 16
    assert set(ledger(redis_conn).values()) == {job.id}


def test_ledger_entries_expire_after_the_configured_ttl(client: FlaskClient, redis_conn: redis.Redis) -> None:
    post(client, [hubspot_event()])
    assert len(ledger(redis_conn)) == 1
    (key,) = redis_conn.keys(f"{LEDGER_PREFIX}*")
    assert key == f"{LEDGER_PREFIX}62515:{NOW_MS // 3_600_000}".encode()  # portal, the event's hour
    ttl = redis_conn.ttl(key)
    assert make_settings().webhooks.dedupe_ttl_s - 5 <= ttl <= make_settings().webhooks.dedupe_ttl_s
    assert ttl > 24 * 3600  # longer than HubSpot's retry window
    assert all(k.startswith((b"lc:", b"rq:")) for k in redis_conn.keys("*"))


# -- dedupe ------------------------------------------------------------------------------------------------------
def test_the_same_delivery_twice_makes_one_set_of_jobs(client: FlaskClient, redis_conn: redis.Redis) -> None:
    events = [hubspot_event(objectId=n) for n in range(10)] + [hubspot_event(portalId=5)]
    first = post(client, events)
    retried = [{**ev, "attemptNumber": 1} for ev in events]
    second = post(client, retried)
    assert first.json == {"accepted": 11, "duplicates": 0, "dropped": 0, "jobs": 2}
    assert second.status_code == 200
    assert second.json == {"accepted": 0, "duplicates": 11, "dropped": 0, "jobs": 0}
    assert len(queued_jobs(redis_conn)) == 2


def test_a_partial_redelivery_enqueues_only_the_new_events(client: FlaskClient, redis_conn: redis.Redis) -> None:
    old = [hubspot_event(objectId=n) for n in range(3)]
    new = hubspot_event(objectId=50)
    post(client, old)
    assert post(client, [*old, new]).json == {"accepted": 1, "duplicates": 3, "dropped": 0, "jobs": 1}
    payloads = [job.args[0] for job in queued_jobs(redis_conn)]
    assert payloads[1]["contacts"] == {"50": [new]}


def test_events_sharing_an_event_id_are_all_kept(client: FlaskClient, redis_conn: redis.Redis) -> None:
    a = hubspot_event(eventId=7, objectId=1)
    b = hubspot_event(eventId=7, objectId=2)
    c = hubspot_event(eventId=7, objectId=1, occurredAt=NOW_MS - 5)
    assert post(client, [a, b]).json["accepted"] == 2
    assert post(client, [c]).json["accepted"] == 1
    contacts = [job.args[0]["contacts"] for job in queued_jobs(redis_conn)]
    assert contacts == [{"1": [a], "2": [b]}, {"1": [c]}]


def test_concurrent_identical_deliveries_enqueue_once(app: Flask, redis_conn: redis.Redis) -> None:
    events = [hubspot_event(objectId=n) for n in range(50)]
    barrier = threading.Barrier(6)
    answers: list[dict[str, int]] = []

    def deliver() -> None:
        client = app.test_client()
        barrier.wait()
        answers.append(post(client, events).json)

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(a["accepted"] for a in answers) == [0, 0, 0, 0, 0, 50]
    assert all(a["accepted"] + a["duplicates"] == 50 for a in answers)
    assert len(queued_jobs(redis_conn)) == 1


# -- what is not enqueued ----------------------------------------------------------------------------------------
def test_echoes_of_the_apps_own_writes_are_not_enqueued(client: FlaskClient, redis_conn: redis.Redis) -> None:
    echo = hubspot_event(propertyName="contact_status", changeSource="INTEGRATION", sourceId="4242")
    person = hubspot_event(propertyName="contact_status", changeSource="CRM_UI", sourceId="userId:1", objectId=9)
    assert post(client, [echo]).json == {"accepted": 0, "duplicates": 0, "dropped": 1, "jobs": 0}
    assert redis_conn.keys("*") == []
    post(client, [echo, person])
    (job,) = queued_jobs(redis_conn)
    assert job.args[0]["contacts"] == {"9": [person]}


def test_irrelevant_properties_are_not_enqueued(client: FlaskClient, redis_conn: redis.Redis) -> None:
    response = post(client, [hubspot_event(propertyName="firstname"), hubspot_event(propertyName="phone")])
    assert response.json == {"accepted": 0, "duplicates": 0, "dropped": 2, "jobs": 0}
    assert queued_jobs(redis_conn) == [] and ledger(redis_conn) == {}


# -- email events ---------------------------------------------------------------------------------------------------
def test_email_events_are_grouped_by_lowercased_recipient(client: FlaskClient, redis_conn: redis.Redis) -> None:
    bounce = email_event("BOUNCE", recipient="Ada.Lovelace@Example.com")
    delivered = email_event("DELIVERED", recipient="ada.lovelace@example.com", emailCampaignId=77)
    spam = email_event("SPAMREPORT", recipient="BOB@example.com")
    opened = email_event("OPEN", recipient="bob@example.com")
    response = post(client, [bounce, delivered, spam, opened], url=EMAIL_URL)
    assert response.json == {"accepted": 3, "duplicates": 0, "dropped": 1, "jobs": 1}
    (job,) = queued_jobs(redis_conn)
    assert job.args[0] == {
        "v": 1, "portal_id": 62515, "received_at": NOW_MS, "source": "email", "contacts": {}, "companies": {},
        "emails": {"ada.lovelace@example.com": [bounce, delivered], "bob@example.com": [spam]},
    }
    assert post(client, delivered, url=EMAIL_URL).json["duplicates"] == 1
    assert len(queued_jobs(redis_conn)) == 1


def test_email_events_without_an_id_dedupe_by_content(client: FlaskClient, redis_conn: redis.Redis) -> None:
    event = email_event("BOUNCE", id=None)
    assert post(client, event, url=EMAIL_URL).json["accepted"] == 1
    assert post(client, event, url=EMAIL_URL).json["duplicates"] == 1
    assert post(client, {**event, "created": NOW_MS - 5}, url=EMAIL_URL).json["accepted"] == 1


# -- readiness and metrics ---------------------------------------------------------------------------------------------
def test_readyz_answers_when_redis_does(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200 and response.json == {"status": "ready"}


def test_metrics_count_requests_events_latency_and_queue_depth(client: FlaskClient) -> None:
    events = [hubspot_event(objectId=1), hubspot_event(objectId=2), hubspot_event("deal.creation"),
              hubspot_event(propertyName="firstname")]
    post(client, events)
    post(client, events)
    client.post("/webhooks/hubspot", data=b"[]")
    post(client, [])
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = response.data.decode()
    expected = [
        'lifecycle_webhook_requests_total{endpoint="hubspot",outcome="ok"} 2.0',
        'lifecycle_webhook_requests_total{endpoint="hubspot",outcome="unauthorized"} 1.0',
        'lifecycle_webhook_requests_total{endpoint="hubspot",outcome="bad_payload"} 1.0',
        'lifecycle_webhook_events_accepted_total{endpoint="hubspot"} 2.0',
        'lifecycle_webhook_events_deduplicated_total{endpoint="hubspot"} 2.0',
        'lifecycle_webhook_events_dropped_total{endpoint="hubspot",reason="unhandled_object"} 2.0',
        'lifecycle_webhook_events_dropped_total{endpoint="hubspot",reason="irrelevant_property"} 2.0',
        'lifecycle_enqueue_seconds_count{endpoint="hubspot"} 2.0',
        'lifecycle_queue_depth{queue="hubspot"} 1.0',
    ]
    for line in expected:
        assert line in text, line


def test_the_queue_name_comes_from_settings(redis_conn: redis.Redis) -> None:
    settings = make_settings()
    settings = dataclasses.replace(settings, worker=settings.worker.model_copy(update={"queue": "other"}))
    client = create_app(settings, redis=redis_conn, clock_ms=lambda: NOW_MS).test_client()
    post(client, [hubspot_event()])
    assert Queue("other", connection=redis_conn).count == 1
    assert Queue("hubspot", connection=redis_conn).count == 0


def test_apps_share_nothing_but_redis(redis_conn: redis.Redis) -> None:
    """Two apps (two gunicorn workers) see each other's ledger."""
    make: Callable[[], FlaskClient] = lambda: create_app(  # noqa: E731
        make_settings(), redis=redis_conn, clock_ms=lambda: NOW_MS).test_client()
    events = [hubspot_event()]
    assert post(make(), events).json["accepted"] == 1
    assert post(make(), events).json["duplicates"] == 1


# -- the coalescing job reads what both producers stored, as RQ itself would ---------------------------------
def test_the_coalescing_read_decodes_every_stored_job_as_rq_does(client: FlaskClient, redis_conn: redis.Redis) -> None:
    """worker.coalesce reads a queued job's `data` field without building RQ's Job: its payload must be
    the job's own first argument, for jobs from the web (webhooks/store.py, its template of RQ's
    commands) and from the worker (Queue.enqueue), and None for anything that is not our job."""
    from worker import coalesce
    from worker.deps import Deps
    from worker.jobs import enqueue_payload

    assert post(client, [hubspot_event(objectId=101), hubspot_event(objectId=10**30)]).status_code == 200
    assert post(client, [email_event("BOUNCE")], url=EMAIL_URL).status_code == 200
    deps = Deps(settings=make_settings(), redis=redis_conn, hubspot=None, limiter=None)  # type: ignore[arg-type]
    queue = deps.queue()
    enqueue_payload(deps, {"v": 1, "portal_id": 62515, "source": "reconcile", "contacts": {"7": []}})
    other = queue.enqueue("builtins.print", "not ours")  # another function: never taken
    redis_conn.hset(Job.key_for("plain"), "data", json.dumps([JOB_FUNC, None, [{"contacts": {}}], {}]))  # uncompressed
    redis_conn.hset(Job.key_for("junk"), "data", zlib.compress(b"\x80 not json"))

    ours = [jid for jid in queue.job_ids if jid != other.id]
    ids = [*ours, other.id, "plain", "junk", "gone"]
    got = coalesce._payloads(redis_conn, ids)
    expected = [Job.fetch(jid, connection=redis_conn, serializer=JSONSerializer).args[0] for jid in ours]
    assert got[:len(ours)] == expected
    assert len(expected) == 3 and any({"101", str(10**30)} <= set(p.get("contacts") or {}) for p in expected)
    assert got[len(ours):] == [None, {"contacts": {}}, None, None]
