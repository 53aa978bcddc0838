"""HubSpot request signatures v1, v2 and v3: pure functions, no clock, no I/O.

Every check raises `SignatureError` with a reason fit for logs (never the secret or the
expected value). See hubspot-facts.md §1.4 for the algorithms and the test vectors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Protocol

from worker.errors import SignatureError

__all__ = [
    "HEADER_SIGNATURE",
    "HEADER_TIMESTAMP",
    "HEADER_V3",
    "HEADER_VERSION",
    "decode_uri",
    "sign_v1",
    "sign_v2",
    "sign_v3",
    "verify_request",
    "verify_v1",
    "verify_v2",
    "verify_v3",
]

HEADER_V3 = "X-HubSpot-Signature-v3"
HEADER_TIMESTAMP = "X-HubSpot-Request-Timestamp"
HEADER_SIGNATURE = "X-HubSpot-Signature"
HEADER_VERSION = "X-HubSpot-Signature-Version"
DEFAULT_MAX_AGE_S = 300


class Headers(Protocol):
    """Anything with a case-insensitive `get` (werkzeug's Headers), or a plain dict."""

    def get(self, key: str, /) -> str | None: ...

# HubSpot decodes exactly these escapes in the URI before signing (v3).
_URI_DECODE = {
    "3A": ":", "2F": "/", "3F": "?", "40": "@", "21": "!", "24": "$",
    "27": "'", "28": "(", "29": ")", "2A": "*", "2C": ",", "3B": ";",
}
_URI_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


def decode_uri(uri: str) -> str:
    """Decode the escapes HubSpot's v3 table lists (%3A → ':' ...); leave every other escape."""
    if "%" not in uri:
        return uri
    return _URI_ESCAPE.sub(lambda m: _URI_DECODE.get(m.group(1).upper(), m.group(0)), uri)


def sign_v1(*, secret: str, body: bytes) -> str:
    """hex(sha256(secret + body)), lowercase."""
    return hashlib.sha256(secret.encode() + body).hexdigest()


def sign_v2(*, secret: str, method: str, uri: str, body: bytes) -> str:
    """hex(sha256(secret + method + uri + body)), lowercase; the URI exactly as requested."""
    return hashlib.sha256((secret + method.upper() + uri).encode() + body).hexdigest()


def sign_v3(*, secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """base64(HMAC-SHA256(secret, method + decoded uri + body + timestamp))."""
    message = (method.upper() + decode_uri(uri)).encode() + body + timestamp.encode()
    return base64.b64encode(hmac.digest(secret.encode(), message, "sha256")).decode()


def _same(expected: str, given: str) -> bool:
    try:
        return hmac.compare_digest(expected.encode("ascii"), given.strip().encode("ascii"))
    except UnicodeEncodeError:
        return False


def verify_v3(
    *,
    secret: str,
    method: str,
    uri: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    now_ms: int,
    max_age_s: int = DEFAULT_MAX_AGE_S,
) -> None:
    """Check a v3 signature and its timestamp (ms), which must be within `max_age_s` of `now_ms`
    in either direction. Raises SignatureError."""
    if not secret:
        raise SignatureError("no client secret configured")
    if not signature:
        raise SignatureError(f"missing {HEADER_V3} header")
    if not timestamp:
        raise SignatureError(f"missing {HEADER_TIMESTAMP} header")
    ts = timestamp.strip()
    if not (ts.isascii() and ts.isdigit()) or len(ts) > 16:  # unicode digits pass isdigit()
        raise SignatureError(f"{HEADER_TIMESTAMP}: not milliseconds since the epoch")
    skew_ms = now_ms - int(ts)
    if skew_ms > max_age_s * 1000:
        raise SignatureError(f"timestamp is {skew_ms // 1000} s old (limit {max_age_s} s)")
    if -skew_ms > max_age_s * 1000:
        raise SignatureError(f"timestamp is {-skew_ms // 1000} s in the future (limit {max_age_s} s)")
    expected = sign_v3(secret=secret, method=method, uri=uri, body=body, timestamp=ts)
    if not _same(expected, signature):
        raise SignatureError("v3 signature does not match")


def verify_v1(*, secret: str, body: bytes, signature: str | None) -> None:
    """Check a v1 signature (no timestamp: replayable, legacy only). Raises SignatureError."""
    if not secret:
        raise SignatureError("no client secret configured")
    if not signature:
        raise SignatureError(f"missing {HEADER_SIGNATURE} header")
    if not _same(sign_v1(secret=secret, body=body), signature.lower()):
        raise SignatureError("v1 signature does not match")


def verify_v2(*, secret: str, method: str, uri: str, body: bytes, signature: str | None) -> None:
    """Check a v2 signature (no timestamp: replayable, legacy only). Raises SignatureError."""
    if not secret:
        raise SignatureError("no client secret configured")
    if not signature:
        raise SignatureError(f"missing {HEADER_SIGNATURE} header")
    if not _same(sign_v2(secret=secret, method=method, uri=uri, body=body), signature.lower()):
        raise SignatureError("v2 signature does not match")


def verify_request(
    *,
    secret: str | None,
    method: str,
    uri: str,
    body: bytes,
    headers: Headers | dict[str, str],
    now_ms: int,
    max_age_s: int = DEFAULT_MAX_AGE_S,
    allow_legacy: bool = False,
) -> str:
    """Verify a request by its headers and return the version used ("v3", "v2" or "v1").

    v3 is used whenever its header is present (a bad v3 is never rescued by a legacy header);
    v1/v2 only when `allow_legacy`. `headers` may be any mapping; lookups ignore case.
    """
    v3 = _header(headers, HEADER_V3)
    if v3 or not allow_legacy:
        verify_v3(secret=secret or "", method=method, uri=uri, body=body,
                  timestamp=_header(headers, HEADER_TIMESTAMP), signature=v3,
                  now_ms=now_ms, max_age_s=max_age_s)
        return "v3"
    legacy = _header(headers, HEADER_SIGNATURE)
    version = (_header(headers, HEADER_VERSION) or "").strip().lower()
    if not legacy:
        raise SignatureError(f"missing {HEADER_V3} and {HEADER_SIGNATURE} headers")
    if version == "v1":
        verify_v1(secret=secret or "", body=body, signature=legacy)
    elif version == "v2":
        verify_v2(secret=secret or "", method=method, uri=uri, body=body, signature=legacy)
    else:
        raise SignatureError(f"{HEADER_VERSION}: unsupported version {version[:8]!r}")
    return version


def _header(headers: Headers | dict[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None and isinstance(headers, dict):
        lower = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lower), None)
    return value
