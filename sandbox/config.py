"""Sandbox configuration: one frozen value built once per process (CLI flags or tests)."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["SandboxConfig", "RateLimit", "parse_rate_limit"]

_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*s\s*$")


@dataclass(frozen=True)
class RateLimit:
    """`limit` requests per rolling `window_s` seconds."""

    limit: int
    window_s: float


def parse_rate_limit(text: str) -> RateLimit | None:
    """Parse "N/Ss" (e.g. "100/10s", "20/0.5s"); "0", "none" or "" disable limiting (None).

    Raises ValueError naming the bad value otherwise.
    """
    cleaned = (text or "").strip().lower()
    if cleaned in ("", "0", "none", "off"):
        return None
    match = _RATE_RE.match(cleaned)
    if not match:
        raise ValueError(f"rate_limit: expected 'N/Ss' like '100/10s', '0' or 'none', got {text!r}")
    limit, window = int(match.group(1)), float(match.group(2))
    if limit <= 0 or window <= 0:
        return None
    return RateLimit(limit=limit, window_s=window)


@dataclass(frozen=True)
class SandboxConfig:
    """Everything a sandbox instance needs; secrets are kept out of repr()."""

    host: str = "127.0.0.1"
    port: int = 8765
    webhook_url: str | None = None
    email_webhook_url: str | None = None
    client_secret: str = "sandbox-client-secret"
    app_id: int = 4242
    app_token: str = "sandbox-app-token"
    portal_id: int = 62515
    rate_limit: str = "100/10s"
    search_rate_per_s: int = 5
    latency_ms: int = 0
    seed: str = "demo"
    webhook_max_attempts: int = 5
    webhook_retry_base_s: float = 0.5
    webhook_timeout_s: float = 5.0
    webhook_max_concurrency: int = 10
    webhook_batch_window_ms: int = 50
    random_seed: int = 42
    # How long a `timeout: true` fault holds the request before answering 504 (HubSpot-side hang).
    fault_timeout_s: float = 30.0
    # Daily request budget reported in X-HubSpot-RateLimit-Daily (Free/Starter private app).
    daily_limit: int = 250_000

    def __post_init__(self) -> None:
        if self.seed not in ("demo", "none"):
            raise ValueError(f"seed: expected 'demo' or 'none', got {self.seed!r}")
        parse_rate_limit(self.rate_limit)  # fail at construction, not on the first request
        if self.webhook_max_attempts < 1:
            raise ValueError("webhook_max_attempts: please enter a value of at least 1")
        if self.webhook_max_concurrency < 1:
            raise ValueError("webhook_max_concurrency: please enter a value of at least 1")

    def __repr__(self) -> str:  # never print secrets
        return (
            f"SandboxConfig(host={self.host!r}, port={self.port}, portal_id={self.portal_id}, "
            f"app_id={self.app_id}, seed={self.seed!r}, rate_limit={self.rate_limit!r}, "
            f"webhook_url={self.webhook_url!r}, email_webhook_url={self.email_webhook_url!r})"
        )

    @property
    def parsed_rate_limit(self) -> RateLimit | None:
        """The app-token bucket, or None when rate limiting is disabled."""
        return parse_rate_limit(self.rate_limit)
