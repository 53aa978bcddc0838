"""Clock and timestamp conversions in HubSpot's formats (ms epoch, ISO-8601 with ms and Z)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

__all__ = ["now_ms", "iso_from_ms", "to_ms", "date_from_ms"]


def now_ms() -> int:
    """Milliseconds since the epoch, as HubSpot timestamps are."""
    return time.time_ns() // 1_000_000


def iso_from_ms(ms: int) -> str:
    """Format like HubSpot's v3 API: 2019-10-30T03:30:17.883Z."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def date_from_ms(ms: int) -> str:
    """A `date` property value: YYYY-MM-DD (UTC)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def to_ms(value: str | int | float) -> int | None:
    """Read a ms-epoch number or an ISO date/datetime; None when it is neither."""
    if isinstance(value, int | float):
        return int(value)
    text = str(value).strip()
    if not text:
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)
