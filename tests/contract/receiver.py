"""A tiny webhook receiver for contract tests: a werkzeug server in a thread that records every request."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response


class _Quiet(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


@dataclass
class Received:
    """One request as the receiver saw it."""

    path: str
    url: str
    headers: dict[str, str]
    body: str
    status: int

    @property
    def events(self) -> list[dict[str, Any]]:
        return json.loads(self.body)  # type: ignore[no-any-return]


@dataclass
class Receiver:
    """Answers 204 unless `responder(request)` returns another status; records everything."""

    requests: list[Received] = field(default_factory=list)
    responder: Callable[[Request], int] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: BaseWSGIServer | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        status = self.responder(request) if self.responder else 204
        body = request.get_data(as_text=True)
        with self._lock:
            self.requests.append(Received(request.path, request.url, dict(request.headers), body, status))
        return Response(status=status)(environ, start_response)

    def start(self) -> Receiver:
        self._server = make_server("127.0.0.1", 0, self, threaded=True, request_handler=_Quiet)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def url(self, path: str = "/hook") -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}{path}"

    def snapshot(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def events(
        self,
        path: str = "/hook",
        predicate: Callable[[dict[str, Any]], bool] = lambda e: True,
        ok_only: bool = True,
    ) -> list[dict[str, Any]]:
        return [
            e for r in self.snapshot(path) if not ok_only or r.status < 300 for e in r.events if predicate(e)
        ]

    def wait_for(self, check: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
        """Poll `check` until it returns something truthy or the deadline passes (then assert)."""
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result or time.monotonic() > deadline:
                assert result, "condition not met before the deadline"
                return result
            time.sleep(interval)
