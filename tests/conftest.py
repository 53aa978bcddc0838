"""Shared fixtures: a real Redis (the one at REDIS_URL, else a private server), cleaned per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import redis

from tools.redis_runtime import RedisServer, ensure_redis

if TYPE_CHECKING:
    from tests.e2e.system import System

# Tests own one database number of the shared server and flush only it.
TEST_DB = int(os.environ.get("LIFECYCLE_TEST_REDIS_DB", "13"))


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a live Redis for this test session, on the tests' own database number.

    By default every test session starts a private redis-server (tens of milliseconds), so
    two runs on one machine never flush each other's data; LIFECYCLE_TEST_SHARED_REDIS=1
    uses the server at REDIS_URL instead (database 13 of it).
    """
    if os.environ.get("LIFECYCLE_TEST_SHARED_REDIS") == "1":
        url, server = ensure_redis(os.environ.get("REDIS_URL"))
    else:
        server = RedisServer().start()
        url = server.url
    base = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
    try:
        yield f"{base}/{TEST_DB}"
    finally:
        if server:
            server.close()


@pytest.fixture()
def redis_conn(redis_url: str) -> Iterator[redis.Redis]:
    """A connection to the test database, flushed before and after the test."""
    conn = redis.Redis.from_url(redis_url)
    conn.flushdb()
    try:
        yield conn
    finally:
        conn.flushdb()
        conn.close()


@pytest.fixture()
def private_redis() -> Iterator[RedisServer]:
    """A Redis server of the test's own, which the test may stop and start."""
    with RedisServer() as server:
        yield server


@pytest.fixture()
def system(redis_url: str, redis_conn: redis.Redis) -> Iterator[System]:
    """The whole system in-process: sandbox, webhook server, Redis, RQ (tests/e2e/system.py)."""
    from tests.e2e.system import System

    s = System(redis_url).start()
    try:
        yield s
    finally:
        s.stop()
