"""Fixtures for end-to-end tests: one whole system per test, on the tests' Redis database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.e2e.system import System


@pytest.fixture()
def system(redis_url: str, redis_conn: redis.Redis) -> Iterator[System]:
    s = System(redis_url).start()
    try:
        yield s
    finally:
        s.stop()
