"""worker.logs: JSON lines on stdout, secrets and email addresses redacted."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from worker.logs import EMAIL_MASK, REDACTED, configure_logging, redact_secrets


@pytest.fixture()
def json_logs() -> Iterator[None]:
    configure_logging("DEBUG")
    yield
    configure_logging("INFO")


def lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize(
    "key",
    ["client_secret", "HUBSPOT_CLIENT_SECRET", "access_token", "token", "Authorization", "api_key", "apikey",
     "password", "email", "recipient", "x_hubspot_signature_v3", "cookie"],
)
def test_secret_looking_keys_are_redacted(key: str) -> None:
    assert redact_secrets(None, "info", {"event": "x", key: "value"})[key] == REDACTED


def test_email_addresses_are_masked_anywhere() -> None:
    out = redact_secrets(None, "info", {
        "event": "contact ada.lovelace+x@example.co.uk not found",
        "detail": {"who": "bob@example.com", "list": ["carol@example.org", 3], "headers": {"Authorization": "B"}},
        "count": 3, "path": "/webhooks/hubspot",
    })
    assert out["event"] == f"contact {EMAIL_MASK} not found"
    assert out["detail"] == {"who": EMAIL_MASK, "list": [EMAIL_MASK, 3], "headers": {"Authorization": REDACTED}}
    assert out["count"] == 3 and out["path"] == "/webhooks/hubspot"


def test_one_json_line_per_event_on_stdout(json_logs: None, capsys: pytest.CaptureFixture[str]) -> None:
    structlog.get_logger("t").info("webhook_request", status=200, token="abc", note="from a@b.example")
    structlog.get_logger("t").debug("detail", n=1)
    (first, second) = lines(capsys.readouterr().out)
    assert first["event"] == "webhook_request" and first["status"] == 200 and first["level"] == "info"
    assert first["token"] == REDACTED and first["note"] == f"from {EMAIL_MASK}"
    assert "timestamp" in first and second["event"] == "detail"


def test_stdlib_loggers_become_json_lines_too(json_logs: None, capsys: pytest.CaptureFixture[str]) -> None:
    logging.getLogger("rq.worker").warning("job for %s failed", "ada@example.com")
    (line,) = lines(capsys.readouterr().out)
    assert line["event"] == f"job for {EMAIL_MASK} failed"
    assert line["logger"] == "rq.worker" and line["level"] == "warning"


def test_the_level_filters(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("WARNING")
    try:
        structlog.get_logger("t").info("hidden")
        structlog.get_logger("t").warning("shown")
        assert [line["event"] for line in lines(capsys.readouterr().out)] == ["shown"]
    finally:
        configure_logging("INFO")


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="level"):
        configure_logging("CHATTY")
