"""Injected failures: rules set through POST /_sandbox/faults, matched per request, first match wins."""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import validation

__all__ = ["FaultRule", "FaultInjector"]

_METHODS = {"GET", "POST", "PATCH", "PUT", "DELETE", "*"}


@dataclass
class FaultRule:
    """One rule. `count` None means unlimited; it goes down by one per request the rule hits."""

    method: str
    path: str
    status: int | None
    rate: float
    latency_ms: int
    timeout: bool
    count: int | None
    pattern: re.Pattern[str]

    def as_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "rate": self.rate,
            "latency_ms": self.latency_ms,
            "timeout": self.timeout,
            "count": self.count,
        }


def parse_rule(raw: Mapping[str, Any]) -> FaultRule:
    """Validate one rule dict; raises HubSpotError(400) naming the bad field."""
    method = str(raw.get("method", "*")).upper()
    if method not in _METHODS:
        raise validation(f"method: expected one of {sorted(_METHODS)}, got {raw.get('method')!r}")
    path = str(raw.get("path", ".*"))
    try:
        pattern = re.compile(path)
    except re.error as exc:
        raise validation(f"path: invalid regular expression {path!r}: {exc}") from exc
    status = raw.get("status", 500)
    rate = float(raw.get("rate", 1.0))
    if not 0.0 <= rate <= 1.0:
        raise validation(f"rate: expected a number between 0 and 1, got {rate}")
    count = raw.get("count")
    return FaultRule(
        method,
        path,
        int(status) if status else None,
        rate,
        int(raw.get("latency_ms", 0) or 0),
        bool(raw.get("timeout", False)),
        int(count) if count is not None else None,
        pattern,
    )


class FaultInjector:
    """Thread-safe rule list; `match` decides (and consumes `count`) for one request."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def set_rules(self, rules: Sequence[Mapping[str, Any]]) -> list[FaultRule]:
        parsed = [parse_rule(r) for r in rules]
        with self._lock:
            self._rules = parsed
        return parsed

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.as_json() for r in self._rules]

    def clear(self) -> None:
        with self._lock:
            self._rules = []

    def match(self, method: str, path: str) -> FaultRule | None:
        """The first rule whose method and path match decides; its `rate` is rolled once."""
        with self._lock:
            for rule in self._rules:
                if rule.count is not None and rule.count <= 0:
                    continue  # exhausted rules stop matching
                if rule.method not in ("*", method.upper()) or not rule.pattern.search(path):
                    continue
                if self._rng.random() >= rule.rate:
                    return None
                if rule.count is not None:
                    rule.count -= 1
                return rule
            return None
