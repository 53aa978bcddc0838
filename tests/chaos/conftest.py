"""The short chaos scenarios: each starts the whole system (its own Redis, the sandbox, the
webhook server under gunicorn, three RQ workers) as separate processes."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: a short chaos scenario (bench/chaos): the whole system under faults")
