"""One rate limiter per portal, shared by every worker process through Redis.

HubSpot enforces a rolling 10-second window per app (TEN_SECONDLY_ROLLING) and 5
searches per second per token. The limiter keeps the same kind of window, as a sorted
set of request times per portal, updated atomically by a Lua script that uses Redis's
own clock (so many machines agree), and admits `requests * (1 - margin)` per window.
`acquire()` blocks until a slot is free and returns how long it waited.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis

# KEYS[1] window zset; ARGV: limit, window_ms, member. Returns 0 when admitted,
# else the ms to wait until the oldest entry leaves the window.
_ACQUIRE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - window)
local count = redis.call('ZCARD', KEYS[1])
if count < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now_ms, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window + 1000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now_ms)
"""


@dataclass(frozen=True)
class Window:
    limit: int
    window_ms: int


class RateLimiter:
    """Rolling-window limiter for one portal: general API calls and searches."""

    def __init__(self, conn: redis.Redis, portal_id: int | str, *, requests: int = 100, per_s: float = 10,
                 margin: float = 0.1, search_per_s: float = 5,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._conn = conn
        self._script = conn.register_script(_ACQUIRE)
        self._sleep = sleep
        self.general = Window(max(1, int(requests * (1 - margin))), int(per_s * 1000))
        # Searches are spaced evenly (one per interval) rather than N per rolling second: HubSpot
        # counts per second and a burst of N at a window's edge can land in one of its seconds.
        self.searches = Window(1, int(1000 / max(0.1, search_per_s * (1 - margin))))
        self._keys = {False: f"lc:rate:{portal_id}:api", True: f"lc:rate:{portal_id}:search"}

    def acquire(self, *, search: bool = False) -> float:
        """Block until a request may be sent; return the seconds waited."""
        window = self.searches if search else self.general
        waited = 0.0
        member = uuid.uuid4().hex
        while True:
            wait_ms = int(self._script(keys=[self._keys[search]], args=[window.limit, window.window_ms, member]))
            if wait_ms <= 0:
                return waited
            self._sleep(wait_ms / 1000.0)
            waited += wait_ms / 1000.0

    def headroom(self, *, search: bool = False) -> tuple[int, int]:
        """(requests used in the current window, limit) — for `lifecycle status`."""
        window = self.searches if search else self.general
        key = self._keys[search]
        seconds, micros = self._conn.time()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        used = int(self._conn.zcount(key, now_ms - window.window_ms, "+inf"))
        return used, window.limit
