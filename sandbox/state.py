"""The running sandbox: configuration, the resettable portal, and the machinery around it (webhook
dispatcher, rate limiters, faults, stats). One instance per app, stored in app.extensions["sandbox"]."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable

from .config import SandboxConfig
from .faults import FaultInjector
from .model import Change
from .ratelimit import RollingWindow
from .seed import Portal, build_portal
from .stats import Stats
from .timeutil import to_ms
from .webhooks_out import WebhookDispatcher

__all__ = ["Sandbox"]


class Sandbox:
    """Owns all state. `clock` (monotonic seconds) drives the rate-limit windows; tests may inject it."""

    def __init__(self, config: SandboxConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.rng = random.Random(config.random_seed)
        self.stats = Stats()
        self.faults = FaultInjector(self.rng)
        limit = config.parsed_rate_limit
        self.limiter = RollingWindow(limit.limit, limit.window_s, clock) if limit else None
        self.search_limiter = RollingWindow(max(1, config.search_rate_per_s), 1.0, clock)
        self.dispatcher = WebhookDispatcher(
            client_secret=config.client_secret,
            target_url=config.webhook_url,
            max_attempts=config.webhook_max_attempts,
            retry_base_s=config.webhook_retry_base_s,
            timeout_s=config.webhook_timeout_s,
            max_concurrency=config.webhook_max_concurrency,
            batch_window_ms=config.webhook_batch_window_ms,
        )
        self._daily: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._event_ids = itertools.count(531_833_541)  # survives resets: ids keep increasing
        self.portal: Portal = self._build()

    def _build(self) -> Portal:
        portal = build_portal(self.config, self._event_ids)
        portal.store.add_listener(self._on_changes)
        return portal

    def _on_changes(self, changes: list[Change]) -> None:
        """Turn store changes into webhook events for the active subscriptions (never blocks)."""
        portal = self.portal
        events = []
        for change in changes:
            value = change.property_value
            if (
                change.event == "propertyChange"
                and value
                and portal.schema.value_kind(change.object_type, change.property_name or "") == "datetime"
            ):
                value = str(to_ms(value))  # webhooks carry dates as ms epoch strings (assumed, see docs)
            events.extend(portal.subscriptions.events_for(change, value))
        self.dispatcher.submit_events(events)

    def count_daily(self, bucket: str) -> int:
        """Count one request against the bucket's daily budget; returns the count so far."""
        with self._lock:
            self._daily[bucket] += 1
            return self._daily[bucket]

    def reset(self) -> None:
        """Back to the seed state: portal rebuilt, stats, faults, limits and webhook state cleared."""
        with self._lock:
            self.dispatcher.reset(self.config.webhook_url)
            self.dispatcher.set_max_concurrency(self.config.webhook_max_concurrency)
            self.portal = self._build()
            self.stats.reset()
            self.faults.clear()
            self.rng.seed(self.config.random_seed)
            for limiter in (self.limiter, self.search_limiter):
                if limiter is not None:
                    limiter.reset()
            self._daily.clear()

    def close(self) -> None:
        self.dispatcher.close()
