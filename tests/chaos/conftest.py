"""The short chaos scenarios: each starts the whole system (its own Redis, the sandbox, the
webhook server under gunicorn, three RQ workers) as separate processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.system import System


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: a short chaos scenario (bench/chaos): the whole system under faults")


@pytest.fixture()
def inproc(redis_url: str, redis_conn: object) -> Iterator[System]:
    """The e2e harness (tests/e2e/system.py): the whole system in this process, for the
    deterministic reproductions of what the chaos scenarios found."""
    s = System(redis_url).start()
    try:
        yield s
    finally:
        s.stop()
