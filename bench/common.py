"""Shared by the end-to-end benchmark (bench.e2e) and its naive baseline (bench.naive).

The system is started exactly as `lifecycle demo` starts it (worker.demo / worker.procs):
the sandbox, `lifecycle serve` and `lifecycle worker` x N as child processes of one
environment with freshly generated secrets, on a Redis database of their own. This module
only adds what a benchmark needs on top: a way to start non-CLI modules as children (the
naive workers), a quiescence wait that says *when* the system became quiet, a config copy
for overrides, and readers for the sandbox's dumps and the workers' JSON logs.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests
import yaml
from rq.registry import ScheduledJobRegistry, StartedJobRegistry

from worker.demo import Portal, _free_port, _setup_portal, _with_db
from worker.procs import Children, wait_http
from worker.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
APP_ID = "4242"
REP_USER = 7  # the rep whose changes the burst makes (user token user-7, CRM_UI / userId:7)
SENTINEL = "bench:e2e:sentinel"  # set after the flush; gone = someone else emptied our database mid-run


class RedisFlushedError(RuntimeError):
    """The benchmark's Redis database was emptied by another process during the run."""


def check_sentinel(conn: redis.Redis) -> None:
    if not conn.exists(SENTINEL):
        raise RedisFlushedError(
            "the benchmark's Redis database was emptied by another process during the run (queued jobs are "
            "gone, so the figures would be wrong): use a database nobody else uses (--redis-db) or a private "
            "Redis (--redis-url)")


@dataclass
class BenchChildren(Children):
    """`Children` that can also start `python -m <module>` (the naive baseline's workers)."""

    def start_module(self, name: str, module: str, *args: str) -> subprocess.Popen[bytes]:
        out = open(os.path.join(self.log_dir, f"{name}.log"), "wb") if self.log_dir else subprocess.DEVNULL
        proc = subprocess.Popen([sys.executable, "-m", module, *args], env=dict(self.env), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc


@dataclass
class System:
    """The running processes and how to reach them."""

    children: BenchChildren
    redis_url: str
    conn: redis.Redis
    base: str  # the sandbox
    web: str  # the webhook server
    env: dict[str, str]
    settings: Settings
    logs: str
    workers: int
    portal: Portal = field(init=False)

    def __post_init__(self) -> None:
        self.portal = Portal(self.base, self.env["HUBSPOT_ACCESS_TOKEN"])

    @property
    def app_token(self) -> str:
        return self.env["HUBSPOT_ACCESS_TOKEN"]

    def setup_portal(self) -> None:
        _setup_portal(self.settings)

    def stop(self) -> None:
        self.children.stop()


def write_config(base: str | None, *, rate_limit: tuple[int, float] | None = None,
                 coalesce_max_contacts: int | None = None, directory: str) -> str | None:
    """A copy of the config (`base` or the bundled one) with worker overrides; None when nothing changes."""
    path = Path(base) if base else REPO / "config.yaml"
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    worker = raw.setdefault("worker", {})
    changed = False
    if rate_limit is not None:
        current = worker.setdefault("rate_limit", {})
        if (current.get("requests", 100), float(current.get("per_s", 10))) != (rate_limit[0], rate_limit[1]):
            current["requests"], current["per_s"] = rate_limit[0], rate_limit[1]
            changed = True
    if coalesce_max_contacts is not None and worker.get("coalesce_max_contacts") != coalesce_max_contacts:
        worker["coalesce_max_contacts"] = coalesce_max_contacts
        changed = True
    if not changed:
        return base
    out = Path(directory) / "config.yaml"
    out.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return str(out)


def start_system(redis_url: str, redis_db: int, *, workers: int, latency_ms: int, rate_limit: str,
                 config: str | None, log_dir: str) -> System:
    """Start sandbox (--seed none), web and N workers as the demo does; flush the Redis db; setup-portal."""
    url = _with_db(redis_url, redis_db)
    conn = redis.Redis.from_url(url)
    conn.flushdb()
    conn.set(SENTINEL, str(time.time()))
    sandbox_port, web_port = _free_port(), _free_port()
    base, web = f"http://127.0.0.1:{sandbox_port}", f"http://127.0.0.1:{web_port}"
    env = {**os.environ, "REDIS_URL": url, "HUBSPOT_BASE_URL": base, "HUBSPOT_ACCESS_TOKEN": secrets.token_hex(16),
           "HUBSPOT_CLIENT_SECRET": secrets.token_hex(16), "HUBSPOT_APP_ID": APP_ID,
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    if config:
        env["LIFECYCLE_CONFIG"] = config
    children = BenchChildren(env=env, log_dir=log_dir)
    try:
        sandbox = children.start("sandbox", "sandbox", "--port", str(sandbox_port), "--seed", "none",
                                 "--webhook-url", f"{web}/webhooks/hubspot",
                                 "--email-webhook-url", f"{web}/webhooks/email-events",
                                 "--rate-limit", rate_limit, "--latency-ms", str(latency_ms))
        web_proc = children.start("web", "serve", "--host", "127.0.0.1", "--port", str(web_port))
        for i in range(workers):
            children.start(f"worker{i + 1}", "worker")
        wait_http(f"{base}/_sandbox/health", proc=sandbox)
        wait_http(f"{web}/readyz", proc=web_proc, timeout_s=30)
        settings = load_settings(environ=env)
        system = System(children, url, conn, base, web, env, settings, log_dir, workers)
        system.setup_portal()
        return system
    except BaseException:
        children.stop()
        raise


# -- quiescence ------------------------------------------------------------------------------------
def busy_jobs(conn: redis.Redis, queues: Sequence[str]) -> int:
    """Jobs queued, started or scheduled (retries) on `queues`."""
    return sum(conn.llen(f"rq:queue:{q}") + StartedJobRegistry(q, connection=conn).count
               + ScheduledJobRegistry(q, connection=conn).count for q in queues)


def settle(conn: redis.Redis, queues: Sequence[str], portal: Portal, *, timeout_s: float,
           quiet_polls: int = 4, poll_s: float = 0.1) -> float:
    """The demo's quiescence test (queues empty, no started or scheduled job, no webhook pending),
    held for `quiet_polls` polls; returns the wall-clock time the final quiet streak began."""
    deadline = time.monotonic() + timeout_s
    quiet, since = 0, 0.0
    while time.monotonic() < deadline:
        check_sentinel(conn)
        portal.http.post(f"{portal.base}/_sandbox/webhooks/flush", params={"timeout": 10}, timeout=30)
        now = time.time()
        pending = portal.control("stats")["webhooks"]["pending"]
        if busy_jobs(conn, queues) or pending:
            quiet = 0
        else:
            since = since if quiet else now
            quiet += 1
            if quiet >= quiet_polls:
                check_sentinel(conn)
                return since
        time.sleep(poll_s)
    raise RuntimeError(f"the system did not become quiet within {timeout_s:.0f} s; see the logs")


def wait_delivered(portal: Portal, *, timeout_s: float, poll_s: float = 0.05) -> float:
    """The wall-clock time the sandbox first had no webhook pending (buffered or in flight):
    the burst's webhooks have all been answered by the web server, so its jobs are queued."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not portal.control("stats")["webhooks"]["pending"]:
            return time.time()
        time.sleep(poll_s)
    raise RuntimeError(f"the burst's webhooks were not delivered within {timeout_s:.0f} s; see the logs")


class Sampler:
    """Every `every_s`: queue depth and API calls so far (the burst's timeline, for the JSON report)."""

    def __init__(self, conn: redis.Redis, queues: Sequence[str], portal: Portal, every_s: float = 1.0) -> None:
        self.conn, self.queues, self.portal, self.every_s = conn, list(queues), portal, every_s
        self.rows: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)
        self._started = 0.0
        self._http = requests.Session()

    def start(self) -> Sampler:
        self._started = time.time()
        self._thread.start()
        return self

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join(5)
        return self.rows

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                stats = self._http.get(f"{self.portal.base}/_sandbox/stats", timeout=10).json()
                queued = sum(self.conn.llen(f"rq:queue:{q}") for q in self.queues)
            except (requests.RequestException, redis.RedisError):
                continue
            self.rows.append({"t": round(time.time() - self._started, 2), "queued_jobs": queued,
                              "api_calls": stats["total_calls"], "rate_limited": stats["rate_limited"],
                              "webhooks_pending": stats["webhooks"]["pending"]})


# -- reading the sandbox -----------------------------------------------------------------------------
_local = threading.local()


def _session() -> requests.Session:
    s = getattr(_local, "session", None)
    if s is None:
        s = _local.session = requests.Session()
    return s


def dump_objects(base: str, object_type: str, ids: Iterable[str], threads: int = 8) -> dict[str, dict[str, Any]]:
    """`GET /_sandbox/objects/{type}/{id}` for every id: properties, full history, associations (not counted)."""

    def one(oid: str) -> tuple[str, dict[str, Any]]:
        r = _session().get(f"{base}/_sandbox/objects/{object_type}/{oid}", timeout=30)
        r.raise_for_status()
        return oid, r.json()

    with ThreadPoolExecutor(threads) as pool:
        return dict(pool.map(one, list(ids)))


def list_objects(base: str, object_type: str) -> list[dict[str, Any]]:
    r = _session().get(f"{base}/_sandbox/objects/{object_type}", timeout=60)
    r.raise_for_status()
    return list(r.json()["results"])


def integration_writes(obj: dict[str, Any], app_id: str, since_ms: float) -> dict[str, list[int]]:
    """Per property, the times (ms) of this app's writes (INTEGRATION / app id) at or after `since_ms`."""
    found: dict[str, list[int]] = {}
    for name, entries in (obj.get("propertiesWithHistory") or {}).items():
        for e in entries:
            if e.get("sourceType") == "INTEGRATION" and str(e.get("sourceId")) == app_id:
                ts = _ms(e.get("timestamp"))
                if ts is not None and ts >= since_ms:
                    found.setdefault(name, []).append(ts)
    return found


def _ms(value: Any) -> int | None:
    from rules.triggers import parse_ms

    return parse_ms(value)


# -- reading the workers' logs -----------------------------------------------------------------------
def job_lines(log_dir: str, prefix: str, since: float, event: str = "job_processed") -> list[dict[str, Any]]:
    """JSON log lines named `event` from `<prefix>*.log` written at or after `since` (epoch seconds)."""
    from datetime import datetime

    rows = []
    for path in sorted(Path(log_dir).glob(f"{prefix}*.log")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if f'"{event}"' not in line:
                continue
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if row.get("event") != event:
                continue
            stamp = row.get("timestamp")
            if stamp:
                try:
                    if datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() < since:
                        continue
                except ValueError:
                    pass
            rows.append(row)
    return rows


def new_log_dir(prefix: str = "bench-e2e-") -> str:
    return tempfile.mkdtemp(prefix=prefix)
