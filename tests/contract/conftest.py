"""Session fixtures: one demo-seeded sandbox on port 0 with a webhook receiver, and official SDK clients."""

from __future__ import annotations

from collections.abc import Iterator

import hubspot
import pytest

from sandbox.config import SandboxConfig
from sandbox.server import SandboxServer

from .receiver import Receiver

APP_TOKEN = "contract-app-token"
SECRET = "contract-client-secret"
APP_ID = 777
PORTAL_ID = 62515


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    rec = Receiver().start()
    yield rec
    rec.stop()


@pytest.fixture(scope="session")
def server(receiver: Receiver) -> Iterator[SandboxServer]:
    """The shared sandbox: limits high enough not to interfere, short webhook windows and backoff."""
    config = SandboxConfig(
        port=0,
        app_token=APP_TOKEN,
        client_secret=SECRET,
        app_id=APP_ID,
        portal_id=PORTAL_ID,
        webhook_url=receiver.url("/hook"),
        email_webhook_url=receiver.url("/email"),
        rate_limit="100000/10s",
        search_rate_per_s=100000,
        seed="demo",
        webhook_batch_window_ms=20,
        webhook_retry_base_s=0.02,
        webhook_timeout_s=2.0,
    )
    with SandboxServer(config) as srv:
        yield srv


def make_client(base_url: str, token: str) -> hubspot.Client:
    return hubspot.Client.create(access_token=token, host=base_url, base_url=base_url)


@pytest.fixture(scope="session")
def client(server: SandboxServer) -> hubspot.Client:
    """The integration (app token)."""
    return make_client(server.base_url, APP_TOKEN)


@pytest.fixture(scope="session")
def rep(server: SandboxServer) -> hubspot.Client:
    """HubSpot user 1101 (owner 101) working in the UI."""
    return make_client(server.base_url, "user-1101")
