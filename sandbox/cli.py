"""`lifecycle sandbox`: run the local HubSpot sandbox until SIGINT/SIGTERM."""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType

import click

from .config import SandboxConfig, parse_rate_limit
from .server import SandboxServer

__all__ = ["sandbox"]


def _check_rate(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        parse_rate_limit(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    return value


@click.command("sandbox")
@click.option("--host", envvar="SANDBOX_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="SANDBOX_PORT", type=int, default=8765, show_default=True)
@click.option(
    "--webhook-url", envvar="SANDBOX_WEBHOOK_URL", default=None, help="Where CRM webhooks are sent."
)
@click.option(
    "--email-webhook-url",
    envvar="SANDBOX_EMAIL_WEBHOOK_URL",
    default=None,
    help="Where simulated email events are posted.",
)
@click.option(
    "--client-secret",
    envvar="HUBSPOT_CLIENT_SECRET",
    default="sandbox-client-secret",
    help="Secret used to sign webhooks.",
)
@click.option("--app-id", envvar="HUBSPOT_APP_ID", type=int, default=4242, show_default=True)
@click.option(
    "--app-token",
    envvar="HUBSPOT_ACCESS_TOKEN",
    default="sandbox-app-token",
    help="The integration's bearer token.",
)
@click.option("--portal-id", envvar="SANDBOX_PORTAL_ID", type=int, default=62515, show_default=True)
@click.option(
    "--rate-limit",
    envvar="SANDBOX_RATE_LIMIT",
    default="100/10s",
    show_default=True,
    callback=_check_rate,
    help="N/Ss rolling window per token; 0 or none disables.",
)
@click.option("--latency-ms", envvar="SANDBOX_LATENCY_MS", type=int, default=0, show_default=True)
@click.option(
    "--seed", envvar="SANDBOX_SEED", type=click.Choice(["demo", "none"]), default="demo", show_default=True
)
def sandbox(
    host: str,
    port: int,
    webhook_url: str | None,
    email_webhook_url: str | None,
    client_secret: str,
    app_id: int,
    app_token: str,
    portal_id: int,
    rate_limit: str,
    latency_ms: int,
    seed: str,
) -> None:
    """Serve a local HubSpot emulator (CRM, associations, properties, webhooks) until interrupted."""
    config = SandboxConfig(
        host=host,
        port=port,
        webhook_url=webhook_url,
        email_webhook_url=email_webhook_url,
        client_secret=client_secret,
        app_id=app_id,
        app_token=app_token,
        portal_id=portal_id,
        rate_limit=rate_limit,
        latency_ms=latency_ms,
        seed=seed,
    )
    started = time.monotonic()
    server = SandboxServer(config).start()
    stop = threading.Event()

    def _handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)
    elapsed = time.monotonic() - started
    click.echo(
        f"HubSpot sandbox listening on {server.base_url} (portal {portal_id}, app {app_id}, seed {seed}, "
        f"webhooks → {webhook_url or 'none'}; ready in {elapsed:.1f}s)",
        err=False,
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        click.echo("HubSpot sandbox stopped.")
