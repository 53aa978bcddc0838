"""HubSpot's request limits: a rolling window per bucket (app token, reps, search) plus a daily count."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RollingWindow", "Verdict"]


@dataclass(frozen=True)
class Verdict:
    """Whether a request may proceed, and what the X-HubSpot-RateLimit-* headers should say."""

    allowed: bool
    limit: int
    remaining: int
    window_ms: int


class RollingWindow:
    """At most `limit` hits per rolling `window_s` seconds per key. The clock is injectable for tests."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window_s, self._clock = limit, window_s, clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> Verdict:
        """Count a request for `key` unless the window is full (a refused request is not counted)."""
        now = self._clock()
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            allowed = len(hits) < self.limit
            if allowed:
                hits.append(now)
            return Verdict(allowed, self.limit, max(0, self.limit - len(hits)), int(self.window_s * 1000))

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()
