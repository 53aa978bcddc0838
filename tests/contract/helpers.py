"""Small helpers shared by the contract tests."""

from __future__ import annotations

import json
import uuid
from typing import Any


def unique_email(prefix: str = "c") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@contract.example"


class _Raw:
    """The slice of urllib3's response that ApiClient.deserialize reads."""

    def __init__(self, body: str) -> None:
        self.data = body


def as_model(api: Any, body: str | bytes, model: str) -> Any:
    """Deserialize a raw body with the SDK's own ApiClient (raises if required fields are missing)."""
    text = body.decode() if isinstance(body, bytes) else body
    return api.api_client.deserialize(_Raw(text), model)


def error_json(exc: Any) -> dict[str, Any]:
    return json.loads(exc.body)  # type: ignore[no-any-return]
