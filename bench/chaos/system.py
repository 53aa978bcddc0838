"""The whole system as separate processes, for chaos runs, with the knobs the scenarios turn.

One `ChaosSystem` per scenario: its own redis-server (AOF on, `appendfsync always`,
`noeviction`, as production should run it), the sandbox (`bench.chaos.sandbox_main`),
the webhook server under gunicorn (`lifecycle serve`) and N RQ workers (`lifecycle
worker`), with fresh secrets and a copy of config.yaml with shortened retry intervals
(`CHAOS_CONFIG`). Background threads:
- a supervisor restarts any worker process that died (as systemd/Heroku would), counting
  crashes separately from the kills a scenario makes;
- a poller keeps every webhook delivery attempt from the sandbox's log (it holds 5000);
- a sampler records the RSS of every process (for the soak).

Nothing here imports rules/ to decide anything: the expected outcome comes from
`bench.chaos.stories`; this module only runs and observes.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis
import requests
import yaml
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import parse_composite_key

from tools.redis_runtime import RedisServer

ROOT = Path(__file__).resolve().parents[2]
APP_ID = "4242"
PORTAL_ID = 62515
QUEUE = "hubspot"

# config.yaml overrides for chaos runs (documented in docs/chaos.md): retries that fit in a
# run of minutes instead of the production five; everything else is the shipped config.
CHAOS_CONFIG: dict[str, dict[str, Any]] = {
    "worker": {
        "retry_intervals_s": [2, 5, 10],   # production: [10, 30, 60, 120]
        "http_retry_stop_s": 20,           # production: 60
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class SystemOptions:
    workers: int = 3
    web_workers: int = 2
    web_threads: int = 4
    rate_limit: str = "100/10s"           # the sandbox's API limit for the app token (HubSpot's)
    latency_ms: int = 100                 # every API call takes this long (HubSpot: ~100-300 ms); set
                                          # after setup-portal
    webhook_max_attempts: int = 10        # HubSpot: 10 retries over 24 h; here 0.5 s · 2^n
    webhook_retry_base_s: float = 0.5
    webhook_timeout_s: float = 5.0        # HubSpot waits 5 s for an answer
    fault_timeout_s: float = 20.0         # a `timeout` fault holds the request this long, then 504
    capture_url: str | None = None        # send the sandbox's webhooks here instead of the web server
    config: dict[str, dict[str, Any]] = field(default_factory=lambda: json.loads(json.dumps(CHAOS_CONFIG)))
    restart_delay_s: float = 1.0          # supervisor: restart a dead worker after this long
    sample_every_s: float = 0.0           # RSS sampling period (0: off)
    worker_argv: tuple[str, ...] = ("-m", "worker.cli", "worker")  # or ("-m", "bench.chaos.worker_proposed")
    reaper: bool = True                   # the workers' abandoned-job reaper (worker.reaper.enabled)


@dataclass
class Proc:
    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    started: float
    expected_dead: bool = False           # killed on purpose: not a crash


@dataclass
class Attempt:
    """One webhook delivery attempt as the sandbox logged it."""

    delivery: str
    attempt: int
    kind: str
    status: int | None
    error: str | None
    sent_ms: int
    duration_ms: int
    events: int


class Procs:
    """Child processes in their own sessions, so a kill takes the whole tree (worker + work horse)."""

    def __init__(self, env: dict[str, str], log_dir: str) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: dict[str, Proc] = {}
        self.lock = threading.RLock()

    def start(self, name: str, argv: list[str]) -> Proc:
        with self.lock:
            log = open(os.path.join(self.log_dir, f"{name}.log"), "ab")
            popen = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=str(ROOT))
            log.close()
            proc = Proc(name, argv, popen, time.monotonic())
            self.procs[name] = proc
            return proc

    def restart(self, name: str) -> Proc:
        with self.lock:
            return self.start(name, self.procs[name].argv)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> list[int]:
        """Signal the process and every descendant. A process group is not enough: RQ's work
        horse calls setpgrp(), so killpg() on the worker leaves the horse running its job."""
        with self.lock:
            proc = self.procs[name]
            proc.expected_dead = True
            pids: list[int] = []
            if proc.popen.poll() is None:
                try:
                    tree = [psutil.Process(proc.popen.pid)]
                    tree += tree[0].children(recursive=True)
                except psutil.Error:
                    tree = []
                for p in tree:
                    try:
                        p.send_signal(sig)
                        pids.append(p.pid)
                    except psutil.Error:
                        pass
        proc.popen.wait(10)
        return pids

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return bool(proc and proc.popen.poll() is None)

    def stop_all(self, timeout_s: float = 10.0) -> None:
        with self.lock:
            procs = list(self.procs.values())
            for proc in procs:
                proc.expected_dead = True
                if proc.popen.poll() is None:
                    try:
                        os.killpg(proc.popen.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
        deadline = time.monotonic() + timeout_s
        for proc in procs:
            try:
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(proc.name)


class ChaosSystem:
    """Start with `start()`, drive through `portal`, `settle()`, then `stop()`."""

    def __init__(self, label: str, options: SystemOptions | None = None) -> None:
        self.label = label
        self.opts = options or SystemOptions()
        self.log_dir = tempfile.mkdtemp(prefix=f"chaos-{label}-")
        self.session_local = threading.local()
        self.attempts: dict[tuple[str, int], Attempt] = {}
        self.redis_down: list[list[int | None]] = []   # [down_ms, up_ms or None]
        self.crashes: list[tuple[float, str, int | None]] = []  # (time, worker, returncode)
        self.kills: list[tuple[float, str]] = []
        self.replays: list[dict[str, Any]] = []
        self.rss: list[tuple[float, str, int, int]] = []  # (t, process name, pid, rss kB)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.supervise = True
        self.started_at = time.monotonic()

    # -- start / stop -----------------------------------------------------------------------------
    def start(self) -> ChaosSystem:
        self.redis = RedisServer(appendonly=True, workdir=os.path.join(self.log_dir, "redis"))
        os.makedirs(self.redis.workdir, exist_ok=True)
        self.redis.start()
        self.redis_url = self.redis.url
        self.conn = redis.Redis.from_url(self.redis_url, socket_timeout=5, socket_connect_timeout=2)
        self.config_path = os.path.join(self.log_dir, "config.yaml")
        self._write_config()
        self.secret = secrets.token_hex(16)
        self.token = secrets.token_hex(16)
        self.sandbox_port, self.web_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.sandbox_port}"
        self.web = f"http://127.0.0.1:{self.web_port}"
        self.env = {**os.environ, "REDIS_URL": self.redis_url, "HUBSPOT_BASE_URL": self.base,
                    "HUBSPOT_ACCESS_TOKEN": self.token, "HUBSPOT_CLIENT_SECRET": self.secret,
                    "HUBSPOT_APP_ID": APP_ID, "LIFECYCLE_CONFIG": self.config_path, "PYTHONUNBUFFERED": "1"}
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.procs = Procs(self.env, self.log_dir)
        crm_url = self.opts.capture_url or f"{self.web}/webhooks/hubspot"
        email_url = (self.opts.capture_url + "/email") if self.opts.capture_url else f"{self.web}/webhooks/email-events"
        sandbox_config = {
            "port": self.sandbox_port, "webhook_url": crm_url, "email_webhook_url": email_url,
            "client_secret": self.secret, "app_id": int(APP_ID), "app_token": self.token, "portal_id": PORTAL_ID,
            "rate_limit": self.opts.rate_limit, "seed": "none",
            "webhook_max_attempts": self.opts.webhook_max_attempts,
            "webhook_retry_base_s": self.opts.webhook_retry_base_s,
            "webhook_timeout_s": self.opts.webhook_timeout_s, "fault_timeout_s": self.opts.fault_timeout_s,
        }
        py = sys.executable
        self.procs.start("sandbox", [py, "-m", "bench.chaos.sandbox_main", json.dumps(sandbox_config)])
        self.procs.start("web", [py, "-m", "worker.cli", "serve", "--host", "127.0.0.1", "--port",
                                 str(self.web_port), "--workers", str(self.opts.web_workers),
                                 "--threads", str(self.opts.web_threads)])
        self.worker_names = [f"worker{i + 1}" for i in range(self.opts.workers)]
        for name in self.worker_names:
            self.procs.start(name, [py, *self.opts.worker_argv])
        self._wait_http(f"{self.base}/_sandbox/health", "sandbox")
        self._wait_http(f"{self.web}/readyz", "web")
        self._setup_portal()
        self.control("POST", "/_sandbox/chaos/latency", json={"ms": self.opts.latency_ms})
        self._spawn(self._supervisor)
        self._spawn(self._poll_webhook_log)
        if self.opts.sample_every_s:
            self._spawn(self._sample_rss)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self.procs.stop_all()
        self.redis.stop()

    def _write_config(self) -> None:
        data = yaml.safe_load((ROOT / "config.yaml").read_text())
        for section, values in self.opts.config.items():
            data.setdefault(section, {}).update(values)
        data["worker"]["reaper"] = {**(data["worker"].get("reaper") or {}), "enabled": self.opts.reaper}
        Path(self.config_path).write_text(yaml.safe_dump(data, sort_keys=False))

    def set_reaper(self, enabled: bool, timeout_s: float = 120.0) -> None:
        """Turn the workers' reaper on or off: rewrite the config and warm-restart the workers."""
        self.opts.reaper = enabled
        self._write_config()
        self.restart_workers(timeout_s)

    def restart_workers(self, timeout_s: float = 120.0) -> None:
        """SIGTERM each worker's main process (a warm shutdown: its current job finishes); the
        supervisor starts it again with the current config."""
        with self.procs.lock:
            old = [self.procs.procs[name] for name in self.worker_names]
            for proc in old:
                proc.expected_dead = True
                if proc.popen.poll() is None:
                    proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in old:
            try:
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.procs.kill(proc.name)
        while time.monotonic() < deadline and not all(
                self.procs.procs[name] is not proc and self.procs.alive(name)
                for name, proc in zip(self.worker_names, old, strict=True)):
            time.sleep(0.1)

    def _wait_http(self, url: str, name: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.procs.alive(name):
                raise RuntimeError(f"{name} exited; see {self.log_dir}/{name}.log")
            try:
                if requests.get(url, timeout=1).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s; see {self.log_dir}")

    def settings(self) -> Any:
        from worker.settings import load_settings

        return load_settings(environ=self.env)

    def _setup_portal(self) -> None:
        from worker import setup_portal
        from worker.deps import make_deps

        deps = make_deps(self.settings(), redis.Redis.from_url(self.redis_url))
        setup_portal.apply(setup_portal.plan(deps.settings, deps.hubspot), deps.hubspot)

    def _spawn(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True, name=target.__name__)
        thread.start()
        self._threads.append(thread)

    # -- HTTP to the sandbox ------------------------------------------------------------------------
    @property
    def http(self) -> requests.Session:
        s = getattr(self.session_local, "s", None)
        if s is None:
            s = requests.Session()
            s.trust_env = False
            self.session_local.s = s
        return s

    def control(self, method: str, path: str, **kw: Any) -> Any:
        r = self.http.request(method, f"{self.base}{path}", timeout=kw.pop("timeout", 60), **kw)
        r.raise_for_status()
        return r.json() if r.content else None

    def api(self, method: str, path: str, token: str, **kw: Any) -> Any:
        """A HubSpot API call as a user; 429 and 5xx (faults) are retried, like a browser would."""
        for attempt in range(60):
            r = self.http.request(method, f"{self.base}{path}", headers={"Authorization": f"Bearer {token}"},
                                  timeout=60, **kw)
            if r.status_code == 429 or r.status_code >= 500:
                time.sleep(min(2.0, 0.2 * (attempt + 1)))
                continue
            if r.status_code >= 400:
                raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:300]}")
            return r.json() if r.content else None
        raise RuntimeError(f"{method} {path}: still failing after 60 attempts")

    def faults(self, rules: list[dict[str, Any]] | None) -> None:
        """Replace the sandbox's fault rules with `rules` (None: clear them)."""
        if rules:
            self.control("POST", "/_sandbox/faults", json={"rules": rules})
        else:
            self.control("DELETE", "/_sandbox/faults")

    def stats(self) -> dict[str, Any]:
        return dict(self.control("GET", "/_sandbox/stats"))

    def objects(self, object_type: str) -> list[dict[str, Any]]:
        return list(self.control("GET", f"/_sandbox/objects/{object_type}")["results"])

    def object(self, object_type: str, oid: str) -> dict[str, Any]:
        return dict(self.control("GET", f"/_sandbox/objects/{object_type}/{oid}"))

    def unsubscribes(self) -> dict[str, int]:
        return dict(self.control("GET", "/_sandbox/chaos/unsubscribes"))

    def flush(self, timeout_s: float = 5.0) -> dict[str, Any]:
        return dict(self.control("POST", f"/_sandbox/webhooks/flush?timeout={timeout_s}", timeout=timeout_s + 30))

    # -- Redis and RQ, observed without side effects ------------------------------------------------
    def queue_state(self) -> dict[str, int]:
        """Counts straight from Redis keys: reading RQ's registries through RQ would run their
        cleanup (and so recover abandoned jobs), which would hide what RQ itself does."""
        q = f"rq:queue:{QUEUE}"
        pipe = self.conn.pipeline(transaction=False)
        pipe.llen(q)
        pipe.llen(IntermediateQueue.get_intermediate_queue_key(q))
        pipe.zcard(f"rq:wip:{QUEUE}")
        pipe.zcard(f"rq:scheduled:{QUEUE}")
        pipe.zcard(f"rq:failed:{QUEUE}")
        queued, intermediate, started, scheduled, failed = pipe.execute()
        return {"queued": queued, "intermediate": intermediate, "started": started, "scheduled": scheduled,
                "failed": failed}

    def redis_up(self) -> bool:
        try:
            return bool(self.conn.ping())
        except redis.RedisError:
            return False

    def job_status(self, job_id: str) -> str | None:
        try:
            value = self.conn.hget(f"rq:job:{job_id}", "status")
        except redis.RedisError:
            return None
        return value.decode() if value else None

    def current_jobs(self) -> dict[str, str]:
        """worker process name → the id of the job it is running (from RQ's worker hashes)."""
        by_worker = {f"lifecycle-{p.popen.pid}": name for name in self.worker_names
                     if (p := self.procs.procs.get(name)) and p.popen.poll() is None}
        found: dict[str, str] = {}
        try:  # RQ 3 keeps no current job in the worker hash: go from the started executions to their job
            for entry in self.conn.zrange(f"rq:wip:{QUEUE}", 0, -1):
                job_id = parse_composite_key(entry.decode())[0]
                worker = self.conn.hget(f"rq:job:{job_id}", "worker_name")
                if worker and worker.decode() in by_worker and self.job_status(job_id) == "started":
                    found[by_worker[worker.decode()]] = job_id
        except redis.RedisError:
            pass
        return found

    def replay_all(self) -> dict[str, Any]:
        """`lifecycle replay --all`, as on-call (or a cron) would run it; falls back to RQ's own
        FailedJobRegistry.requeue when the command is not available."""
        started = time.monotonic()
        ids = [i.decode() for i in self.conn.zrange(f"rq:failed:{QUEUE}", 0, -1)]
        run = subprocess.run([sys.executable, "-m", "worker.cli", "replay", "--all"], env=self.env,
                             capture_output=True, text=True, timeout=300, cwd=str(ROOT))
        how = "lifecycle replay --all"
        if run.returncode == 2 and "No such command" in run.stderr:
            how = "FailedJobRegistry.requeue (lifecycle replay not available)"
            registry = FailedJobRegistry(QUEUE, connection=self.conn, serializer=JSONSerializer)
            for job_id in registry.get_job_ids():
                registry.requeue(job_id)
        entry = {"at": time.monotonic() - self.started_at, "jobs": len(ids), "how": how, "rc": run.returncode,
                 "output": (run.stdout.strip().splitlines() or [""])[-1], "errors": run.stderr.strip()[-500:],
                 "seconds": round(time.monotonic() - started, 2), "job_ids": ids}
        self.replays.append(entry)
        return entry

    # -- quiescence -----------------------------------------------------------------------------------
    def settle(self, timeout_s: float = 300.0, *, replay: bool = True, quiet_polls: int = 3,
               poll_s: float = 0.3) -> dict[str, Any]:
        """Wait until nothing is pending anywhere: the sandbox has no webhook to deliver and the
        queue, the started, scheduled and intermediate lists are empty. Failed jobs are replayed
        with `lifecycle replay --all` (what on-call does). Returns what it took."""
        started = time.monotonic()
        quiet, replays = 0, 0
        last: dict[str, Any] = {}
        while time.monotonic() - started < timeout_s:
            try:
                pending = self.flush(2.0).get("pending", 0)
            except requests.RequestException:
                pending = 1
            try:
                state = self.queue_state()
            except redis.RedisError:
                quiet = 0
                time.sleep(poll_s)
                continue
            last = {**state, "pending": pending}
            if state["failed"] and replay:
                self.replay_all()
                replays += 1
                quiet = 0
                continue
            busy = pending + state["queued"] + state["intermediate"] + state["started"] + state["scheduled"]
            quiet = quiet + 1 if not busy else 0
            if quiet >= quiet_polls:
                return {"settled": True, "seconds": round(time.monotonic() - started, 1), "replays": replays,
                        "failed_left": state["failed"]}
            time.sleep(poll_s)
        return {"settled": False, "seconds": round(time.monotonic() - started, 1), "replays": replays, "last": last}

    # -- faults on processes -------------------------------------------------------------------------
    def kill_worker(self, name: str) -> list[int]:
        """SIGKILL a worker process and all its children (work horse, scheduler): a machine or
        container dying under it."""
        self.kills.append((time.monotonic(), name))
        return self.procs.kill(name, signal.SIGKILL)

    def stop_redis(self, hard: bool = False) -> None:
        self.redis_down.append([now_ms(), None])
        if hard and self.redis.proc:
            self.redis.proc.kill()
            self.redis.proc.wait(10)
            self.redis.proc = None
        else:
            self.redis.stop()

    def start_redis(self) -> None:
        self.redis.start(timeout_s=60)
        self.redis_down[-1][1] = now_ms()

    @contextmanager
    def paused_supervisor(self) -> Iterator[None]:
        self.supervise = False
        try:
            yield
        finally:
            self.supervise = True

    # -- background threads ----------------------------------------------------------------------------
    def _supervisor(self) -> None:
        dead_since: dict[str, float] = {}
        while not self._stop.wait(0.2):
            if not self.supervise:
                continue
            for name in self.worker_names:
                proc = self.procs.procs[name]
                code = proc.popen.poll()
                if code is None:
                    dead_since.pop(name, None)
                    continue
                first = dead_since.setdefault(name, time.monotonic())
                if time.monotonic() - first < self.opts.restart_delay_s:
                    continue
                if not proc.expected_dead:
                    self.crashes.append((time.monotonic() - self.started_at, name, code))
                dead_since.pop(name, None)
                if not self._stop.is_set():
                    self.procs.restart(name)

    def _poll_webhook_log(self) -> None:
        while not self._stop.wait(1.0):
            self.poll_webhook_log()

    def poll_webhook_log(self) -> None:
        try:
            log = self.control("GET", "/_sandbox/webhooks/log", timeout=30)["results"]
        except (requests.RequestException, ValueError):
            return
        for e in log:
            key = (str(e["deliveryId"]), int(e["attemptNumber"]))
            if key not in self.attempts:
                self.attempts[key] = Attempt(key[0], key[1], e.get("kind", "crm"), e.get("status"), e.get("error"),
                                             int(e.get("sentAt") or 0), int(e.get("durationMs") or 0),
                                             int(e.get("eventCount") or 0))

    def _sample_rss(self) -> None:
        while not self._stop.wait(self.opts.sample_every_s):
            self.sample_rss()

    def sample_rss(self) -> None:
        t = time.monotonic() - self.started_at
        roots = {name: p.popen.pid for name, p in list(self.procs.procs.items()) if p.popen.poll() is None}
        if self.redis.proc and self.redis.proc.poll() is None:
            roots["redis"] = self.redis.proc.pid
        for name, pid in roots.items():
            try:
                root = psutil.Process(pid)
                family = [(name, root)] + [(f"{name}/child", c) for c in root.children(recursive=True)]
            except psutil.Error:
                continue
            for label, p in family:
                try:
                    rss = _rss_kb(p.pid)
                except OSError:
                    continue
                self.rss.append((t, label, p.pid, rss))

    # -- webhook answers while Redis was up ------------------------------------------------------------
    def classify_attempts(self, grace_ms: int = 0) -> dict[str, int]:
        """Delivery attempts by outcome; a 5xx or no answer counts against us unless the attempt
        overlapped a window when our Redis was down."""
        self.poll_webhook_log()
        out = {"attempts": 0, "ok": 0, "http_5xx_redis_up": 0, "no_answer_redis_up": 0,
               "http_5xx_redis_down": 0, "no_answer_redis_down": 0, "http_4xx": 0}
        windows = [(d, (u or now_ms()) + grace_ms) for d, u in self.redis_down]
        for a in self.attempts.values():
            out["attempts"] += 1
            if a.status is not None and 200 <= a.status < 300:
                out["ok"] += 1
                continue
            start, end = a.sent_ms, a.sent_ms + a.duration_ms
            down = any(start <= u and end >= d for d, u in windows)
            if a.status is not None and 400 <= a.status < 500:
                out["http_4xx"] += 1
            elif a.status is not None:
                out["http_5xx_redis_down" if down else "http_5xx_redis_up"] += 1
            else:
                out["no_answer_redis_down" if down else "no_answer_redis_up"] += 1
        return out


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def job_exists(conn: redis.Redis, job_id: str) -> bool:
    return bool(Job.exists(job_id, connection=conn))
