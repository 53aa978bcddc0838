"""HubSpot's request signatures (hubspot-facts.md §1.4): v1, v2 and v3, byte for byte."""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = ["sign_v1", "sign_v2", "sign_v3", "signature_headers", "decode_v3_uri"]


def sign_v1(secret: str, body: str) -> str:
    return hashlib.sha256((secret + body).encode("utf-8")).hexdigest()


def sign_v2(secret: str, method: str, uri: str, body: str) -> str:
    return hashlib.sha256((secret + method + uri + body).encode("utf-8")).hexdigest()


# Escapes HubSpot decodes in the URI before computing v3 ([VALNEW]).
_V3_DECODE = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}


def decode_v3_uri(uri: str) -> str:
    for escaped, plain in _V3_DECODE.items():
        uri = uri.replace(escaped, plain).replace(escaped.lower(), plain)
    return uri


def sign_v3(secret: str, method: str, uri: str, body: str, timestamp_ms: str) -> str:
    message = (method + decode_v3_uri(uri) + body + timestamp_ms).encode("utf-8")
    return base64.b64encode(hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()).decode()


def signature_headers(
    secret: str, uri: str, body: str, timestamp_ms: str, legacy: str = "v1"
) -> dict[str, str]:
    """Headers for a POST to `uri`: v3 plus the legacy v1 (CRM webhooks) or v2 (workflow-style) pair."""
    legacy_sig = sign_v1(secret, body) if legacy == "v1" else sign_v2(secret, "POST", uri, body)
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Signature": legacy_sig,
        "X-HubSpot-Signature-Version": legacy,
        "X-HubSpot-Signature-v3": sign_v3(secret, "POST", uri, body, timestamp_ms),
        "X-HubSpot-Request-Timestamp": timestamp_ms,
    }
