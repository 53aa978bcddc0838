"""`lifecycle serve`: the webhook app under gunicorn, as the Procfile's `web:` line runs it."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

__all__ = ["serve"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _child_exit(server: Any, worker: Any) -> None:
    """gunicorn hook: drop a dead worker's live-gauge files (prometheus multiprocess mode)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def _gunicorn_app(options: dict[str, Any]) -> Any:
    from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]

    class WebhookApplication(BaseApplication):  # type: ignore[misc]
        """gunicorn embedded: our options only, no gunicorn command line or config file."""

        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)
            if "control_socket_disable" in self.cfg.settings:  # gunicorn >= 25.1: one socket per user
                self.cfg.set("control_socket_disable", True)

        def load(self) -> Any:
            from webhooks import create_app

            return create_app()

    return WebhookApplication()


def _prepare_multiproc_dir() -> str | None:
    """Use $PROMETHEUS_MULTIPROC_DIR (emptied) or a fresh temp dir; return the dir to remove after."""
    existing = os.environ.get(MULTIPROC_ENV)
    if existing:
        path = Path(existing)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        return None
    created = tempfile.mkdtemp(prefix="lifecycle-prometheus-")
    os.environ[MULTIPROC_ENV] = created
    return created


@click.command()
@click.option("--host", default="0.0.0.0", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=8000, envvar="PORT", show_default=True, help="Port (env PORT).")
@click.option("--workers", type=click.IntRange(1), default=2, envvar="WEB_CONCURRENCY", show_default=True,
              help="gunicorn worker processes (env WEB_CONCURRENCY).")
@click.option("--threads", type=click.IntRange(1), default=4, show_default=True,
              help="Threads per worker (gthread); 1 runs sync workers.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="config.yaml to use (default $LIFECYCLE_CONFIG, else the bundled one).")
def serve(host: str, port: int, workers: int, threads: int, config_file: str | None) -> None:
    """Serve the webhook endpoints under gunicorn (what the Procfile's web: line runs)."""
    from worker.errors import ConfigError
    from worker.settings import load_settings

    if config_file:
        os.environ["LIFECYCLE_CONFIG"] = str(Path(config_file).resolve())
    try:  # fail here, once, rather than in every worker
        load_settings().require("HUBSPOT_CLIENT_SECRET")
    except ConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    created = _prepare_multiproc_dir()
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread" if threads > 1 else "sync",
        "threads": threads,
        "accesslog": None,  # one structured line per request comes from the app
        "errorlog": "-",
        "loglevel": "info",
        "timeout": 30,
        "graceful_timeout": 10,
        "keepalive": 5,
        "child_exit": _child_exit,
        "proc_name": "lifecycle-web",
    }
    if Path("/dev/shm").is_dir():
        options["worker_tmp_dir"] = "/dev/shm"
    try:
        _gunicorn_app(options).run()
    finally:
        if created:
            shutil.rmtree(created, ignore_errors=True)
