"""Call counters served by GET /_sandbox/stats."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

__all__ = ["Stats"]


class Stats:
    """Counts API calls by "<METHOD> <path template>", 429s and injected faults."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._calls: Counter[str] = Counter()
            self._rate_limited = 0
            self._faults = 0

    def count_call(self, key: str) -> None:
        with self._lock:
            self._calls[key] += 1

    def count_rate_limited(self) -> None:
        with self._lock:
            self._rate_limited += 1

    def count_fault(self) -> None:
        with self._lock:
            self._faults += 1

    def snapshot(self, webhooks: dict[str, int]) -> dict[str, Any]:
        with self._lock:
            return {
                "total_calls": sum(self._calls.values()),
                "calls": dict(sorted(self._calls.items())),
                "rate_limited": self._rate_limited,
                "faults_served": self._faults,
                "webhooks": webhooks,
            }
