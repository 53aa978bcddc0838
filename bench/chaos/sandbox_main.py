"""The HubSpot sandbox as a process of its own, for chaos runs.

`lifecycle sandbox` exposes only some of `SandboxConfig`; chaos runs also set the webhook
retry policy (attempts, backoff), the fault timeout and the batching window. This launcher
takes the whole config as JSON and adds one read-only endpoint the checks need and the
sandbox does not keep: `GET /_sandbox/chaos/unsubscribes`, the successful unsubscribe-all calls per
email address (v4 single and batch), so a second unsubscribe of the same contact shows up
as a duplicate side effect even though HubSpot's state cannot tell; and `POST
/_sandbox/chaos/latency {"ms": N}`, the extra latency of every API call, set after
setup-portal so that setting up the portal stays quick.

    python -m bench.chaos.sandbox_main '{"port": 0, "webhook_url": "...", ...}'

Prints `chaos sandbox listening on http://127.0.0.1:PORT` once ready; stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections import Counter
from dataclasses import replace
from types import FrameType
from urllib.parse import unquote

from flask import Response, jsonify, request

from sandbox.config import SandboxConfig
from sandbox.server import SandboxServer

UNSUBSCRIBE_PREFIX = "/communication-preferences/v4/statuses/"


def main(argv: list[str]) -> int:
    config = SandboxConfig(**json.loads(argv[0] if argv else "{}"))
    server = SandboxServer(config)
    app = server.app
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    @app.after_request
    def count_unsubscribes(response: Response) -> Response:
        path = request.path
        if (request.method != "POST" or not path.startswith(UNSUBSCRIBE_PREFIX)
                or not path.endswith("/unsubscribe-all") or response.status_code >= 300):
            return response
        if path == UNSUBSCRIBE_PREFIX + "batch/unsubscribe-all":
            body = request.get_json(silent=True) or {}
            emails = [str(e).lower() for e in body.get("inputs") or []]
        else:
            emails = [unquote(path[len(UNSUBSCRIBE_PREFIX):-len("/unsubscribe-all")]).lower()]
        with lock:
            counts.update(emails)
        return response

    @app.post("/_sandbox/chaos/latency")
    def set_latency() -> Response:
        """Change the extra latency of every API call at run time (after setup-portal)."""
        sandbox = app.extensions["sandbox"]
        sandbox.config = replace(sandbox.config, latency_ms=int((request.get_json(silent=True) or {})["ms"]))
        return jsonify({"latency_ms": sandbox.config.latency_ms})

    @app.get("/_sandbox/chaos/unsubscribes")
    def unsubscribes() -> Response:
        with lock:
            return jsonify(dict(counts))

    stop = threading.Event()

    def _handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _handle)
    signal.signal(signal.SIGINT, _handle)
    server.start()
    print(f"chaos sandbox listening on {server.base_url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
