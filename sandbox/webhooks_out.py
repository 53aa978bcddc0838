"""Outgoing webhook delivery, as HubSpot does it (hubspot-facts.md §1.3): batches of ≤100 events
gathered for a short window, at most N requests in flight, v3+legacy signatures, retries with
backoff on connection errors, timeouts and any non-2xx, attemptNumber incremented per retry.

All network I/O runs on a pump thread and a worker pool, never on the API request threads.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import json
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .signing import signature_headers
from .timeutil import now_ms

__all__ = ["WebhookDispatcher", "Delivery", "MAX_EVENTS_PER_REQUEST"]

MAX_EVENTS_PER_REQUEST = 100


@dataclass
class Delivery:
    """One POST (and its retries): a batch of CRM events or one email-event record."""

    id: int
    kind: str
    url: str
    events: list[dict[str, Any]]
    legacy: str
    generation: int
    attempt: int = 0


class WebhookDispatcher:
    """Thread-safe dispatcher. `submit_events` never blocks on the network."""

    def __init__(
        self,
        *,
        client_secret: str,
        target_url: str | None,
        max_attempts: int,
        retry_base_s: float,
        timeout_s: float,
        max_concurrency: int,
        batch_window_ms: int,
        log_limit: int = 5000,
    ) -> None:
        self._secret = client_secret
        self.target_url = target_url
        self.max_attempts, self.retry_base_s, self.timeout_s = max_attempts, retry_base_s, timeout_s
        self.max_concurrency = max_concurrency
        self._window_s = batch_window_ms / 1000
        self._cond = threading.Condition()
        self._buffer: list[dict[str, Any]] = []
        self._buffer_since = 0.0
        self._retries: list[tuple[float, int, Delivery]] = []
        self._outstanding = 0
        self._counters: Counter[str] = Counter()
        self._log: deque[dict[str, Any]] = deque(maxlen=log_limit)
        self._paused = False
        self._closed = False
        self._generation = 0
        self._ids = itertools.count(1)
        self._executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="sandbox-webhook")
        self._local = threading.local()
        self._pump: threading.Thread | None = None

    # ---- intake ------------------------------------------------------------------------------------
    def submit_events(self, events: list[dict[str, Any]]) -> None:
        """Queue CRM events for the current target; dropped while paused, counted as not sent without one."""
        if not events:
            return
        with self._cond:
            if self._paused:
                self._counters["dropped"] += len(events)
            elif not self.target_url:
                self._counters["not_sent"] += len(events)
            else:
                if not self._buffer:
                    self._buffer_since = time.monotonic()
                self._buffer.extend(events)
                self._ensure_pump()
                self._cond.notify_all()

    def submit_record(
        self, url: str | None, payload: list[dict[str, Any]], kind: str = "email", legacy: str = "v2"
    ) -> None:
        """Send one payload at once (no batching window), with the same signing and retries."""
        with self._cond:
            if not url:
                self._counters["not_sent"] += 1
                return
            delivery = Delivery(next(self._ids), kind, url, payload, legacy, self._generation)
            self._outstanding += 1
            self._ensure_pump()
            self._executor.submit(self._attempt, delivery)

    # ---- control -------------------------------------------------------------------------------------
    def pause(self) -> None:
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    def set_max_concurrency(self, value: int) -> None:
        """Swap the worker pool (deliveries already running finish on the old one)."""
        with self._cond:
            old, self._executor = (
                self._executor,
                ThreadPoolExecutor(max_workers=value, thread_name_prefix="sandbox-webhook"),
            )
            self.max_concurrency = value
        old.shutdown(wait=False)

    def pending(self) -> int:
        """Deliveries not finished yet, counting buffered events as the batches they will become."""
        with self._cond:
            return self._pending_locked()

    def _pending_locked(self) -> int:
        return self._outstanding + -(-len(self._buffer) // MAX_EVENTS_PER_REQUEST)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until nothing is pending (True) or `timeout_s` passes (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending_locked() == 0, timeout=timeout_s)

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {
                "delivered": self._counters["delivered"],
                "failed": self._counters["failed"],
                "pending": self._pending_locked(),
                "events_delivered": self._counters["events_delivered"],
                "not_sent": self._counters["not_sent"],
                "dropped": self._counters["dropped"],
            }

    def log(self) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._log)

    def reset(self, target_url: str | None) -> None:
        """Forget queued work, counters and the log; in-flight requests finish but are not counted."""
        with self._cond:
            self._generation += 1
            self._buffer.clear()
            self._retries.clear()
            self._outstanding = 0
            self._counters.clear()
            self._log.clear()
            self._paused = False
            self.target_url = target_url
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ---- pump ------------------------------------------------------------------------------------------
    def _ensure_pump(self) -> None:
        if self._pump is None or not self._pump.is_alive():
            self._pump = threading.Thread(target=self._run, name="sandbox-webhook-pump", daemon=True)
            self._pump.start()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                while len(self._buffer) >= MAX_EVENTS_PER_REQUEST:
                    self._start_batch(MAX_EVENTS_PER_REQUEST)
                if self._buffer and now >= self._buffer_since + self._window_s:
                    self._start_batch(len(self._buffer))
                while self._retries and self._retries[0][0] <= now:
                    _, _, delivery = heapq.heappop(self._retries)
                    self._executor.submit(self._attempt, delivery)
                waits = [self._buffer_since + self._window_s - now] if self._buffer else []
                if self._retries:
                    waits.append(self._retries[0][0] - now)
                self._cond.wait(timeout=max(0.0, min(waits)) if waits else None)

    def _start_batch(self, size: int) -> None:
        chunk, self._buffer = self._buffer[:size], self._buffer[size:]
        self._buffer_since = time.monotonic()
        if not self.target_url:
            self._counters["not_sent"] += len(chunk)
            return
        delivery = Delivery(next(self._ids), "crm", self.target_url, chunk, "v1", self._generation)
        self._outstanding += 1
        self._executor.submit(self._attempt, delivery)

    # ---- one attempt (worker thread) ---------------------------------------------------------------------
    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST on this thread's keep-alive connection to the URL's host; returns the status.

        Plain `http.client`, not `requests`: on a 2-core machine the sandbox shares with the system
        it feeds, `requests` cost about as much CPU per delivery as the receiving endpoint did.
        A connection the receiver closed while idle is reopened once (nothing was answered on it).
        """
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conns: dict[tuple[str, str], http.client.HTTPConnection] = self._local.__dict__.setdefault("conns", {})
        key = (parts.scheme, parts.netloc)
        for _ in range(2):
            conn = conns.get(key)
            reused = conn is not None
            if conn is None:
                kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
                conn = conns[key] = kind(parts.hostname or "", parts.port, timeout=self.timeout_s)
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
            except BaseException as exc:
                conn.close()
                del conns[key]
                stale = isinstance(exc, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError))
                if reused and stale:
                    continue  # closed while idle: once more on a new connection
                raise
            if response.will_close:
                conn.close()
                del conns[key]
            return response.status
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(self, delivery: Delivery) -> None:
        events = [
            {**e, "attemptNumber": delivery.attempt} if "attemptNumber" in e else e for e in delivery.events
        ]
        body = json.dumps(events, separators=(",", ":"), ensure_ascii=False)
        timestamp = str(now_ms())
        headers = signature_headers(self._secret, delivery.url, body, timestamp, delivery.legacy)
        started, status, error = time.monotonic(), None, None
        try:
            status = self._post(delivery.url, body.encode("utf-8"), headers)
        except TimeoutError as exc:
            error = f"Timeout: {exc}"
        except (OSError, http.client.HTTPException) as exc:
            error = f"ConnectionError: {type(exc).__name__}: {exc}"
        except Exception as exc:  # noqa: BLE001 - a delivery must always finish, or `pending` never drains
            error = f"{type(exc).__name__}: {exc}"
        self._finish(delivery, status, error, int(timestamp), time.monotonic() - started)

    def _finish(
        self, delivery: Delivery, status: int | None, error: str | None, sent_at: int, elapsed: float
    ) -> None:
        ok = status is not None and 200 <= status < 300
        with self._cond:
            if delivery.generation != self._generation:
                return  # sent before a reset: not part of the current run's numbers
            retry = not ok and delivery.attempt + 1 < self.max_attempts
            outcome = "delivered" if ok else ("retrying" if retry else "failed")
            self._log.append(
                {
                    "deliveryId": delivery.id,
                    "kind": delivery.kind,
                    "url": delivery.url,
                    "attemptNumber": delivery.attempt,
                    "eventCount": len(delivery.events),
                    "eventIds": [e.get("eventId", e.get("id")) for e in delivery.events],
                    "status": status,
                    "error": error,
                    "outcome": outcome,
                    "sentAt": sent_at,
                    "durationMs": int(elapsed * 1000),
                }
            )
            if ok:
                self._counters["delivered"] += 1
                self._counters["events_delivered"] += len(delivery.events)
                self._outstanding -= 1
            elif retry:
                delay = self.retry_base_s * (2**delivery.attempt)
                delivery.attempt += 1
                heapq.heappush(self._retries, (time.monotonic() + delay, delivery.id, delivery))
            else:
                self._counters["failed"] += 1
                self._outstanding -= 1
            self._cond.notify_all()
