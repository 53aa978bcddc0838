"""Structured logging for the web and worker processes: one JSON line per event on stdout.

`configure_logging()` sets up structlog (and routes the stdlib loggers of gunicorn, rq and
redis through the same processors), with `redact_secrets` scrubbing anything that looks like
a secret, token, authorization header or email address before a line is written.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import MutableMapping
from functools import lru_cache
from typing import Any

import structlog

REDACTED = "[redacted]"
EMAIL_MASK = "[email]"

# Keys whose values are never logged, matched anywhere in the key, case-insensitively.
_SENSITIVE_KEY = re.compile(
    r"secret|token|passw|authori[sz]ation|api_?key|cookie|e_?mail|recipient|signature|credential|"
    r"private_?key|session",
    re.IGNORECASE,
)
# Email addresses inside any string value (good enough for logs; it errs on masking).
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
# Tokens inside free text (an exception message that quotes a header, say): HubSpot private-app
# tokens (`pat-<region>-<uuid>`) and any bearer credential.
_TOKEN = re.compile(r"\bpat-[a-z]{2,4}\d*-[0-9a-f-]{8,}|\bBearer\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
TOKEN_MASK = "[token]"


@lru_cache(maxsize=1024)
def _is_sensitive_key(key: str) -> bool:
    return key != "event" and bool(_SENSITIVE_KEY.search(key))


def _scrub(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        if "@" in value:
            value = _EMAIL.sub(EMAIL_MASK, value)
        if "pat-" in value or "PAT-" in value or "earer" in value:
            value = _TOKEN.sub(TOKEN_MASK, value)
        return value
    if depth > 5:
        return value
    if isinstance(value, dict):
        return {
            k: (REDACTED if isinstance(k, str) and _is_sensitive_key(k) else _scrub(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v, depth + 1) for v in value]
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask secret-looking keys, and email addresses and tokens in values."""
    for key, value in event_dict.items():
        if _is_sensitive_key(key):
            event_dict[key] = REDACTED
        elif value is None or isinstance(value, int | float | bool):
            continue
        else:
            event_dict[key] = _scrub(value)
    return event_dict


class _Stdout:
    """Whatever sys.stdout is at write time (test runners swap it), one write per line."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def _dumps(obj: Any, **kw: Any) -> str:
    return json.dumps(obj, default=str, separators=(",", ":"), ensure_ascii=False)


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        redact_secrets,
    ]


def configure_logging(level: str | int = "INFO") -> None:
    """Log JSON lines to stdout at `level` ("DEBUG", "INFO", ...), secrets and emails redacted.

    Idempotent; both structlog loggers and stdlib loggers (gunicorn, rq, redis) are covered.
    """
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"level: unknown log level {level!r}")
    renderer = structlog.processors.JSONRenderer(serializer=_dumps)
    structlog.configure(
        processors=[*_shared_processors(), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=_Stdout()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(_Stdout())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *_shared_processors()],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_lifecycle", False)]:
        root.removeHandler(old)
    handler._lifecycle = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(numeric)
