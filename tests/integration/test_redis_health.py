"""worker/redis_health.py against a Redis of the test's own, whose CONFIG it may change."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from redis.exceptions import ResponseError

from tools.redis_runtime import RedisServer
from worker.redis_health import redis_findings


@pytest.fixture()
def conn(private_redis: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(private_redis.url)


def test_production_settings_have_no_problem(conn: redis.Redis, private_redis: RedisServer) -> None:
    conn.config_set("appendonly", "yes")
    try:
        found = redis_findings(conn, private_redis.url)
    finally:
        conn.config_set("appendonly", "no")  # else the server's shutdown waits on the AOF rewrite
    assert (found["maxmemory_policy"], found["appendonly"], found["problems"]) == ("noeviction", "yes", [])


def test_eviction_and_no_aof_are_named_with_the_fix(conn: redis.Redis, private_redis: RedisServer) -> None:
    conn.config_set("maxmemory-policy", "allkeys-lru")
    conn.config_set("appendonly", "no")
    problems = redis_findings(conn, private_redis.url)["problems"]
    assert len(problems) == 2
    assert "allkeys-lru" in problems[0] and "set noeviction" in problems[0]
    assert "AOF persistence is off" in problems[1] and "appendonly yes" in problems[1]


class _ManagedRedis:
    """A managed service that has renamed CONFIG away."""

    def config_get(self, name: str) -> Any:
        raise ResponseError("unknown command 'CONFIG'")


@pytest.mark.parametrize(("url", "expect"), [
    ("rediss://user:pw@redis.internal.example:6380/0", []),
    ("redis://user:pw@redis.internal.example:6379/0", ["not TLS"]),
    ("rediss://redis.internal.example:6380/0", ["no password"]),
    ("redis://127.0.0.1:6379/0", []),
    ("redis://localhost/0", []),
])
def test_a_remote_redis_needs_tls_and_a_password(url: str, expect: list[str]) -> None:
    problems = redis_findings(_ManagedRedis(), url)["problems"]  # type: ignore[arg-type]
    assert "does not show its CONFIG" in problems[0]
    assert [next(e for e in expect if e in p) for p in problems[1:]] == expect
