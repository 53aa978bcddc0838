"""Serve a sandbox app on a threaded werkzeug server in a background thread (tests, demo, CLI)."""

from __future__ import annotations

import threading
from dataclasses import replace
from types import TracebackType

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .app import create_app
from .config import SandboxConfig
from .state import Sandbox

__all__ = ["SandboxServer"]


class _Handler(WSGIRequestHandler):
    """HTTP/1.1 so SDK clients keep connections alive (HubSpot does); access log only when asked."""

    protocol_version = "HTTP/1.1"
    quiet = False

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if not self.quiet:
            super().log_request(code, size)


class SandboxServer:
    """`with SandboxServer(SandboxConfig(port=0)) as server: server.base_url` — port 0 picks a free port."""

    def __init__(self, config: SandboxConfig, app: Flask | None = None, *, access_log: bool = False) -> None:
        self.config = config
        self._handler = type("SandboxHandler", (_Handler,), {"quiet": not access_log})
        self.app = app or create_app(config)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def sandbox(self) -> Sandbox:
        """In-process access to the store, stats, dispatcher and faults."""
        return self.app.extensions["sandbox"]  # type: ignore[no-any-return]

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("SandboxServer: call start() first")
        return f"http://{self.config.host}:{self._server.server_port}"

    @property
    def port(self) -> int:
        return self._server.server_port if self._server else self.config.port

    def start(self) -> SandboxServer:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        self._server = make_server(
            self.config.host, self.config.port, self.app, threaded=True, request_handler=self._handler
        )
        self.config = replace(self.config, port=self._server.server_port)
        self._thread = threading.Thread(target=self._server.serve_forever, name="sandbox-http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and stop webhook delivery."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.sandbox.close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
