"""worker.logs masks tokens inside free-text values, not only under secret-looking keys."""

from __future__ import annotations

import pytest

from worker.logs import TOKEN_MASK, redact_secrets

PAT = "pat-na1-0a1b2c3d-4e5f-6789-abcd-ef0123456789"


@pytest.mark.parametrize("text", [
    f"401 Unauthorized for token {PAT}",
    f"headers: {{'Authorization': 'Bearer {PAT}'}}",
    "HTTPError: Authorization: Bearer abc.def-ghi_jkl",
    f"{PAT.upper()} in an upper-case dump",
])
def test_a_token_in_a_message_is_masked(text: str) -> None:
    out = redact_secrets(None, "error", {"event": "hubspot_error", "error": text})["error"]
    assert TOKEN_MASK in out
    assert "0a1b2c3d" not in out.lower() and "abc.def" not in out


def test_nested_values_and_emails_together() -> None:
    out = redact_secrets(None, "error", {"event": "x", "detail": {"why": [f"user a@b.example used {PAT}"]}})
    assert out["detail"]["why"] == [f"user [email] used {TOKEN_MASK}"]


@pytest.mark.parametrize("text", ["the pat-down was fine", "bearer bonds", "3 contacts: pat-12"])
def test_ordinary_words_are_left_alone(text: str) -> None:
    assert redact_secrets(None, "info", {"event": "x", "note": text})["note"] == text
