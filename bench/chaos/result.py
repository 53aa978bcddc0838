"""What one chaos scenario measured: a row of `make chaos` (docs/chaos.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Result:
    name: str
    short: bool
    seconds: float = 0.0
    actions: int = 0
    events: int = 0                      # webhook events delivered to our endpoints (incl. echoes)
    contacts: int = 0
    companies: int = 0
    lost: int = 0
    wrong: int = 0
    duplicates: int = 0
    http_5xx_redis_up: int = 0           # 5xx (or no answer) on good input while Redis was up
    http_5xx_redis_down: int = 0         # 503 while our Redis was down (expected)
    bad_accepted: int | None = None      # hostile-input: a 2xx where a refusal was due (None: no bad input sent)
    http_5xx_bad_input: int | None = None  # hostile-input: 5xx served on bad input
    door_failed: int = 0                 # deliveries the sandbox gave up on (events never accepted)
    replayed_jobs: int = 0
    worker_crashes: int = 0              # worker processes that died on their own (restarted)
    recovery: str = "-"
    ok: bool = False
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)
