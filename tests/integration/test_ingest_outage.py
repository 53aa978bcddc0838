"""Redis outages and races: 503 + Retry-After, and never a ledger entry without its job."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient
from rq.job import Job
from rq.serializers import JSONSerializer

from tools.redis_runtime import RedisServer
from webhooks import create_app
from webhooks.store import DeliveryStore
from webhooks.testing import encode, hubspot_event, signed_headers
from worker.enqueue import ledger_entries, make_redis
from worker.settings import load_settings

pytestmark = pytest.mark.integration

SECRET = "outage-client-secret"
NOW_MS = 1_764_000_000_000
URL = "http://localhost/webhooks/hubspot"
SETTINGS = load_settings(environ={"HUBSPOT_CLIENT_SECRET": SECRET})


def post(client: FlaskClient, events: list[dict[str, Any]]) -> Any:
    body = encode(events)
    headers = signed_headers(secret=SECRET, url=URL, body=body, timestamp_ms=NOW_MS)
    return client.post("/webhooks/hubspot", data=body, headers=headers)


def client_for(conn: redis.Redis) -> FlaskClient:
    return create_app(SETTINGS, redis=conn, clock_ms=lambda: NOW_MS).test_client()


def assert_every_ledger_entry_has_its_job(conn: redis.Redis) -> dict[str, int]:
    """The invariant: a ledger entry names a stored job that carries that event; returns events per job."""
    per_job: dict[str, int] = {}
    for key, job_id in ledger_entries(conn).items():
        assert Job.exists(job_id, connection=conn), f"{key!r} names a job that was never stored"
        per_job[job_id] = per_job.get(job_id, 0) + 1
    for job_id, count in per_job.items():
        payload = Job.fetch(job_id, connection=conn, serializer=JSONSerializer).args[0]
        assert sum(len(v) for v in payload["contacts"].values()) == count
    return per_job


@pytest.fixture()
def durable_redis(private_redis: RedisServer) -> Iterator[RedisServer]:
    """The test's own Redis, restarted with an fsync'd AOF so stop/start keeps committed data."""
    private_redis.appendonly = True
    private_redis.restart()
    yield private_redis


def test_redis_down_answers_503_and_nothing_is_half_written(durable_redis: RedisServer,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    conn = make_redis(durable_redis.url, timeout_s=0.5)
    client = client_for(conn)
    first = [hubspot_event(objectId=n) for n in range(5)]
    assert post(client, first).json["accepted"] == 5

    # 1. Redis is down when the delivery arrives.
    durable_redis.stop()
    second = [hubspot_event(objectId=n) for n in range(10, 15)]
    response = post(client, second)
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert response.json == {"error": "temporarily unavailable"}
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200

    # 2. Redis dies after the job is planned and before the script runs.
    durable_redis.start()
    assert client.get("/readyz").status_code == 200
    real_call = DeliveryStore._call

    def plan_then_crash(*args: Any, **kwargs: Any) -> Any:
        durable_redis.stop()
        return real_call(*args, **kwargs)

    monkeypatch.setattr(DeliveryStore, "_call", plan_then_crash)
    third = [hubspot_event(objectId=n) for n in range(20, 25)]
    assert post(client, third).status_code == 503
    monkeypatch.setattr(DeliveryStore, "_call", real_call)

    # After the restart: only the first delivery is stored, whole.
    durable_redis.start()
    assert assert_every_ledger_entry_has_its_job(conn) == {conn.lrange("rq:queue:hubspot", 0, -1)[0].decode(): 5}

    # HubSpot redelivers: both are accepted now, and the first is still a duplicate.
    assert post(client, second).json == {"accepted": 5, "duplicates": 0, "dropped": 0, "jobs": 1}
    assert post(client, [*third, *first]).json == {"accepted": 5, "duplicates": 5, "dropped": 0, "jobs": 1}
    assert sorted(assert_every_ledger_entry_has_its_job(conn).values()) == [5, 5, 5]
    assert conn.llen("rq:queue:hubspot") == 3


def test_a_concurrent_identical_delivery_during_the_transaction_is_caught(
    redis_conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process stores the same events after we planned our job and before our script runs:
    the script finds them in the ledger and writes nothing, and they are acknowledged as
    duplicates, not enqueued twice."""
    client, rival = client_for(redis_conn), client_for(redis_conn)
    events = [hubspot_event(objectId=n) for n in range(8)]
    real_call = DeliveryStore._call
    calls = {"n": 0}

    def plan_with_a_rival(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            assert post(rival, events).json["accepted"] == 8  # the rival commits first
        return real_call(*args, **kwargs)

    monkeypatch.setattr(DeliveryStore, "_call", plan_with_a_rival)
    response = post(client, events)
    assert response.status_code == 200
    assert response.json == {"accepted": 0, "duplicates": 8, "dropped": 0, "jobs": 0}
    assert calls["n"] == 2  # ours, then the rival's; our retry found everything in the ledger
    assert redis_conn.llen("rq:queue:hubspot") == 1
    assert_every_ledger_entry_has_its_job(redis_conn)


def test_a_stale_pooled_connection_after_a_restart_is_retried(private_redis: RedisServer) -> None:
    conn = make_redis(private_redis.url, timeout_s=0.5)
    client = client_for(conn)
    assert post(client, [hubspot_event()]).status_code == 200
    private_redis.restart()  # the pooled connection is now dead
    assert post(client, [hubspot_event()]).status_code == 200


def test_a_command_failing_inside_the_script_leaves_no_ledger_entry(redis_conn: redis.Redis) -> None:
    """A Lua script is not rolled back: when one of RQ's commands fails half-way (here the queue
    key has the wrong type), the job hash may be written, but no ledger entry is, so the request
    gets 503 and HubSpot's redelivery stores the job again under the same id."""
    client = client_for(redis_conn)
    events = [hubspot_event(objectId=n) for n in range(3)]
    redis_conn.set("rq:queue:hubspot", "not a list")
    response = post(client, events)
    assert response.status_code == 503
    assert ledger_entries(redis_conn) == {}

    redis_conn.delete("rq:queue:hubspot")
    assert post(client, events).json == {"accepted": 3, "duplicates": 0, "dropped": 0, "jobs": 1}
    assert post(client, events).json == {"accepted": 0, "duplicates": 3, "dropped": 0, "jobs": 0}
    assert redis_conn.llen("rq:queue:hubspot") == 1
    assert_every_ledger_entry_has_its_job(redis_conn)
