"""Benchmark webhook ingestion under gunicorn, against the web stack's own ceiling.

    python -m bench.ingest [--seconds 10] [--workers 2] [--threads 4] [--json]

Starts a private redis-server (tools.redis_runtime) unless --redis-url is given, runs
`lifecycle serve` on a free loopback port with LIFECYCLE_BENCH=1, then, from separate client
processes (keep-alive raw-socket HTTP/1.1), drives signed 100-event deliveries (100 distinct
events over 50 contacts each, so nothing is deduplicated):
  1. ceiling: closed loop on POST /_bench/noop (204, no verification, no Redis);
  2. real:    closed loop on POST /webhooks/hubspot;
  3. paced:   the real endpoint at half the ceiling's request rate (open loop; latency is
              counted from each request's scheduled send time, so queueing is not hidden).
Then checks that Redis holds one job per accepted delivery, and reports the figures.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import json
import multiprocessing as mp
import os
import random
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.procs import stop_group

SECRET = "bench-client-secret"
EVENTS_PER_DELIVERY = 100
CONTACTS_PER_DELIVERY = 50
GOAL_RATIO = 0.60
GOAL_P99_MS = 50.0


# -- deliveries ---------------------------------------------------------------------------------
def _template(portal: int, nonce: int) -> str:
    """A 100-event body with @S@ where each delivery's unique sequence number goes."""
    events = []
    for i in range(EVENTS_PER_DELIVERY):
        contact = f"@S@{i % CONTACTS_PER_DELIVERY:02d}"
        common = (f'"eventId":@S@{i:02d},"subscriptionId":{1000 + i % 4},"portalId":{portal},"appId":4242,'
                  f'"occurredAt":{nonce}{i:03d},"attemptNumber":0,"objectId":{contact}')
        if i % 10 == 0:
            events.append(f'{{{common},"subscriptionType":"contact.creation","changeSource":"CRM_UI",'
                          f'"sourceId":"userId:76023669","changeFlag":"CREATED"}}')
        else:
            events.append(f'{{{common},"subscriptionType":"contact.propertyChange","propertyName":"hubspotscore",'
                          f'"propertyValue":"{i * 7 % 150}","changeSource":"CRM_UI","sourceId":"userId:76023669"}}')
    return "[" + ",".join(events) + "]"


def _request(path: str, host: str, template: str, seq: int) -> bytes:
    body = template.replace("@S@", str(seq)).encode()
    ts = str(time.time_ns() // 1_000_000)
    uri = f"http://{host}{path}"
    signature = base64.b64encode(
        hmac.digest(SECRET.encode(), b"POST" + uri.encode() + body + ts.encode(), "sha256")
    ).decode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nX-HubSpot-Signature-v3: {signature}\r\n"
            f"X-HubSpot-Request-Timestamp: {ts}\r\nConnection: keep-alive\r\n\r\n")
    return head.encode() + body


class _Conn:
    """One keep-alive HTTP/1.1 connection; reconnects when the server closes."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.buf = b""

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        return sock

    def roundtrip(self, data: bytes) -> tuple[int, bytes]:
        for attempt in (0, 1):
            if self.sock is None:
                self.sock = self._connect()
            try:
                self.sock.sendall(data)
                return self._read()
            except (ConnectionError, OSError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _read(self) -> tuple[int, bytes]:
        assert self.sock is not None
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            rest += chunk
        body, self.buf = rest[:length], rest[length:]
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None


# -- client processes ---------------------------------------------------------------------------
@dataclass
class PhaseResult:
    name: str
    path: str
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    ok: int = 0
    errors: int = 0
    accepted_events: int = 0
    target_rps: float | None = None
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds used during the phase

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def cpu_ms_per_request(self, who: str) -> float:
        return 1000 * self.cpu_s.get(who, 0.0) / self.ok if self.ok else float("nan")

    def pct(self, q: float) -> float:
        data = sorted(self.latencies_ms)
        if not data:
            return float("nan")
        return data[min(len(data) - 1, int(q * len(data)))]


def _client_process(port: int, path: str, proc: int, threads: int, seconds: float, rate: float | None,
                    start_at: float, nonce: int, out: Any) -> None:
    host = f"127.0.0.1:{port}"
    template = _template(62515, nonce)
    results: list[tuple[list[float], int, int, int]] = []
    lock = threading.Lock()

    def run(thread: int) -> None:
        conn = _Conn(port)
        lat: list[float] = []
        ok = errors = accepted = 0
        seq = (proc * 100 + thread + 1) * 10_000_000
        interval = None if rate is None else 1.0 / rate  # this thread's share of the paced rate
        next_at = start_at + (random.random() * interval if interval else 0.0)
        end = start_at + seconds
        while True:
            if interval:
                delay = next_at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                scheduled = next_at
                next_at += interval
            else:
                scheduled = time.perf_counter()
            if scheduled >= end or time.perf_counter() >= end:
                break  # a saturated paced phase stops on time; its backlog is never sent
            seq += 1
            data = _request(path, host, template, seq)
            if not interval:
                scheduled = time.perf_counter()
            try:
                status, body = conn.roundtrip(data)
            except OSError:
                errors += 1
                continue
            lat.append((time.perf_counter() - scheduled) * 1000)
            if 200 <= status < 300:
                ok += 1
                if status == 200 and body:
                    accepted += json.loads(body).get("accepted", 0)
            else:
                errors += 1
        conn.close()
        with lock:
            results.append((lat, ok, errors, accepted))

    while time.perf_counter() < start_at - 0.05:
        time.sleep(0.01)
    cpu0 = time.process_time()
    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    lat_all: list[float] = []
    for lat, *_ in results:
        lat_all.extend(lat)
    out.put((lat_all, sum(r[1] for r in results), sum(r[2] for r in results), sum(r[3] for r in results),
             time.perf_counter(), time.process_time() - cpu0))


def run_phase(name: str, port: int, path: str, *, seconds: float, procs: int, threads: int,
              rate: float | None = None, meter: CpuMeter | None = None) -> PhaseResult:
    """Drive `path` for `seconds` from `procs` processes x `threads` connections each (at `rate`
    requests/s in all when given, else as fast as the server answers)."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    start_at = time.perf_counter() + 0.5
    per_thread = None if rate is None else rate / (procs * threads)
    nonce = random.randrange(10**9, 10**10)
    children = [
        ctx.Process(target=_client_process,
                    args=(port, path, p, threads, seconds, per_thread, start_at, nonce, out))
        for p in range(procs)
    ]
    for c in children:
        c.start()
    result = PhaseResult(name, path, seconds, target_rps=rate)
    while time.perf_counter() < start_at:
        time.sleep(0.005)
    before = meter.sample() if meter else {}
    ended, client_cpu = start_at, 0.0
    for _ in children:
        lat, ok, errors, accepted, end, cpu = out.get(timeout=seconds * 10 + 60)
        result.latencies_ms.extend(lat)
        result.ok += ok
        result.errors += errors
        result.accepted_events += accepted
        ended, client_cpu = max(ended, end), client_cpu + cpu
    after = meter.sample() if meter else {}
    result.seconds = ended - start_at  # measured, not nominal
    result.cpu_s = {k: after[k] - before[k] for k in after}
    result.cpu_s["client"] = client_cpu
    for c in children:
        c.join(10)
    return result


# -- server -----------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"lifecycle serve exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("lifecycle serve did not become healthy")


def start_server(redis_url: str, port: int, workers: int, threads: int) -> subprocess.Popen[bytes]:
    """`lifecycle serve` as the Procfile runs it, with the bench endpoint enabled."""
    env = dict(os.environ, HUBSPOT_CLIENT_SECRET=SECRET, REDIS_URL=redis_url, LIFECYCLE_BENCH="1")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    exe = Path(sys.executable).with_name("lifecycle")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "worker.cli"]
    cmd += ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
            "--threads", str(threads)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    _wait_healthy(port, proc)
    return proc


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    stop_group(proc)


# -- CPU accounting (Linux /proc; diagnostics only) ------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0.0


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _system_cpu_s() -> float:
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
        busy = sum(int(x) for x in fields[:8]) - int(fields[3]) - int(fields[4])  # minus idle, iowait
        return busy / _TICK
    except (OSError, ValueError):
        return 0.0


class CpuMeter:
    """CPU seconds used by the web server (master + workers), Redis, and the whole machine."""

    def __init__(self, web_pid: int, redis_pid: int | None) -> None:
        self.web_pid, self.redis_pid = web_pid, redis_pid

    def sample(self) -> dict[str, float]:
        web = _proc_cpu_s(self.web_pid) + sum(_proc_cpu_s(c) for c in _children(self.web_pid))
        return {"web": web, "redis": _proc_cpu_s(self.redis_pid) if self.redis_pid else 0.0,
                "machine": _system_cpu_s()}


# -- report -----------------------------------------------------------------------------------------
def _row(r: PhaseResult) -> dict[str, Any]:
    return {
        "phase": r.name, "path": r.path, "target_rps": round(r.target_rps, 1) if r.target_rps else None,
        "deliveries_per_s": round(r.rps, 1), "events_per_s": round(r.rps * EVENTS_PER_DELIVERY),
        "saturated": bool(r.target_rps and r.rps < 0.95 * r.target_rps),
        "p50_ms": round(r.pct(0.50), 2), "p90_ms": round(r.pct(0.90), 2), "p99_ms": round(r.pct(0.99), 2),
        "max_ms": round(max(r.latencies_ms, default=float("nan")), 2), "ok": r.ok, "errors": r.errors,
        "seconds": round(r.seconds, 2),
        "cpu_ms_per_request": {k: round(r.cpu_ms_per_request(k), 3) for k in r.cpu_s},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (Procfile: 2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (1: sync workers)")
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--client-threads", type=int, default=4, help="connections per client process")
    parser.add_argument("--redis-url", default=None, help="use this Redis (default: a private redis-server)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    from tools.redis_runtime import RedisServer

    server = None
    redis_url = args.redis_url
    if not redis_url:
        server = RedisServer().start()
        redis_url = server.url
    port = _free_port()
    web = start_server(redis_url, port, args.workers, args.threads)
    meter = CpuMeter(web.pid, server.proc.pid if server and server.proc else None)
    try:
        load: dict[str, Any] = {"procs": args.client_procs, "threads": args.client_threads, "meter": meter}
        idle_check = _busy_fraction(1.0)
        warmup = run_phase("warmup", port, "/webhooks/hubspot", seconds=1.0, **load)
        ceiling = run_phase("ceiling", port, "/_bench/noop", seconds=args.seconds, **load)
        real = run_phase("real", port, "/webhooks/hubspot", seconds=args.seconds, **load)
        paced = run_phase("real@half-ceiling", port, "/webhooks/hubspot", seconds=args.seconds,
                          rate=ceiling.rps / 2, **load)
        phases = [ceiling, real, paced]
        if real.rps * 0.8 < ceiling.rps / 2:  # half the ceiling is past what the real endpoint sustains
            phases.append(run_phase("real@80%-of-real", port, "/webhooks/hubspot", seconds=args.seconds,
                                    rate=real.rps * 0.8, **load))
        jobs, ledger = _count_stored(redis_url)
    finally:
        stop_server(web)
        if server:
            server.close()
    ratio = real.rps / ceiling.rps if ceiling.rps else 0.0
    accepted = sum(p.accepted_events for p in [warmup, *phases[1:]])
    report = {
        "machine": f"{os.cpu_count()} cores, {sys.platform}, Python {sys.version.split()[0]}",
        "server": f"lifecycle serve: gunicorn {args.workers} workers x {args.threads} threads "
                  f"({'gthread' if args.threads > 1 else 'sync'})",
        "client": f"{args.client_procs} processes x {args.client_threads} keep-alive connections",
        "phases": [_row(r) for r in phases],
        "ratio_real_to_ceiling": round(ratio, 3),
        "cpu_ratio_real_to_ceiling": _cpu_ratio(ceiling, real),
        "goal_ratio_met": ratio >= GOAL_RATIO,
        "goal_p99_met": paced.pct(0.99) < GOAL_P99_MS and paced.rps >= 0.95 * (paced.target_rps or 0),
        "other_load_before_run": round(idle_check, 2),
        "stored": {"jobs": jobs, "ledger_entries": ledger, "accepted_deliveries": accepted // EVENTS_PER_DELIVERY,
                   "accepted_events": accepted},
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print(report)
    consistent = jobs is None or (jobs == accepted // EVENTS_PER_DELIVERY and ledger == accepted)
    return 0 if consistent else 1


def _cpu_ratio(ceiling: PhaseResult, real: PhaseResult) -> float | None:
    """Ceiling / real, from the CPU per request of the benchmark's own processes (web server,
    Redis, clients): what the throughput ratio would be if both phases had the whole machine. It
    moves much less than that ratio when other processes share the machine (their CPU is not in it;
    neither is kernel time not charged to these processes)."""
    if not (ceiling.ok and real.ok):
        return None
    own = ("web", "redis", "client")
    ceiling_ms, real_ms = (sum(r.cpu_ms_per_request(k) for k in own) for r in (ceiling, real))
    return round(ceiling_ms / real_ms, 3) if real_ms else None


def _busy_fraction(seconds: float) -> float:
    """Share of the machine's CPU in use before the run (other processes skew the figures)."""
    before = _system_cpu_s()
    time.sleep(seconds)
    return (_system_cpu_s() - before) / (seconds * (os.cpu_count() or 1))


def _count_stored(redis_url: str) -> tuple[int | None, int | None]:
    """(jobs queued, ledger entries) in a Redis the benchmark owns."""
    import redis

    try:
        conn = redis.Redis.from_url(redis_url)
        entries = sum(int(conn.hlen(k)) for k in conn.scan_iter("lc:dedupe:*", count=10_000))
        return int(conn.llen("rq:queue:hubspot")), entries
    except redis.RedisError:
        return None, None


def _print(report: dict[str, Any]) -> None:
    print(f"machine: {report['machine']}\nserver:  {report['server']}\nclient:  {report['client']}\n")
    cols = ["phase", "target_rps", "deliveries_per_s", "events_per_s", "saturated", "p50_ms", "p90_ms", "p99_ms",
            "max_ms", "ok", "errors"]
    print("  ".join(f"{c:>18}" if i == 0 else f"{c:>16}" for i, c in enumerate(cols)))
    for row in report["phases"]:
        print("  ".join(f"{str(row[c]):>18}" if i == 0 else f"{str(row[c]):>16}" for i, c in enumerate(cols)))
    print("\nCPU ms per request (web = gunicorn master + workers; machine = all processes, kernel included):")
    for row in report["phases"]:
        cpu = "  ".join(f"{k} {v}" for k, v in row["cpu_ms_per_request"].items())
        print(f"  {row['phase']:>18}: {cpu}")
    print(f"\nreal / ceiling requests/s: {report['ratio_real_to_ceiling']:.2f} "
          f"(goal >= {GOAL_RATIO:.2f}: {'met' if report['goal_ratio_met'] else 'NOT met'})")
    if report["cpu_ratio_real_to_ceiling"] is not None:
        print(f"the same from the CPU per request of web + Redis + clients (less sensitive to other load): "
              f"{report['cpu_ratio_real_to_ceiling']:.2f}")
    paced = report["phases"][2]
    print(f"p99 at half the ceiling's rate: {paced['p99_ms']} ms"
          f"{' (saturated: the real endpoint cannot sustain that rate)' if paced['saturated'] else ''} "
          f"(goal < {GOAL_P99_MS:.0f} ms: {'met' if report['goal_p99_met'] else 'NOT met'})")
    for row in report["phases"][3:]:
        print(f"p99 at {row['target_rps']} deliveries/s (80% of the real maximum): {row['p99_ms']} ms")
    stored = report["stored"]
    print(f"stored: {stored['jobs']} jobs for {stored['accepted_deliveries']} accepted deliveries, "
          f"{stored['ledger_entries']} ledger entries for {stored['accepted_events']} accepted events")
    if report["other_load_before_run"] > 0.1:
        print(f"warning: {report['other_load_before_run']:.0%} of the CPU was busy before the run; figures are low")


if __name__ == "__main__":
    sys.exit(main())
