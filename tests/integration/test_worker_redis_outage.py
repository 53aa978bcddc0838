"""`lifecycle worker` rides out a Redis outage (docs/chaos.md, finding 5).

A worker whose job is running when Redis goes away, and a worker started while Redis is
down, both stay up (logging `redis_unavailable` and backing off) and process a job enqueued
after Redis is back; SIGTERM during the backoff ends a worker at once, and after Redis
returns as a warm shutdown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.e2e.system import System
from tools.redis_runtime import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture()
def outage_system(private_redis: RedisServer) -> Iterator[System]:
    s = System(private_redis.url).start()
    try:
        yield s
    finally:
        s.stop()


def _wait(what: str, check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.1)


class WorkerProc:
    """`lifecycle worker` as the Procfile runs it, its output in a file."""

    def __init__(self, system: System, log: Path) -> None:
        env = dict(os.environ, REDIS_URL=system.redis_url, HUBSPOT_BASE_URL=system.base,
                   HUBSPOT_ACCESS_TOKEN="e2e-app-token", HUBSPOT_APP_ID="4242")
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "worker"], env=env, stdout=out,
                                         stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def test_the_worker_survives_a_redis_outage_and_works_after_it(outage_system: System, private_redis: RedisServer,
                                                                tmp_path: Path) -> None:
    system = outage_system
    busy = WorkerProc(system, tmp_path / "busy.log")
    workers = [busy]
    try:
        first = system.rep_create_contact(email="first@ex.test", hubspotscore=150)
        system.flush()
        _wait("the first contact processed", lambda: system.contact(first).get("contact_status") == "mql", 30)

        # A job is running (its batch read held 4 s by the sandbox) when Redis goes away.
        system.session.post(f"{system.base}/_sandbox/faults", timeout=10, json={"rules": [
            {"method": "POST", "path": "contacts/batch/read", "status": None, "latency_ms": 4000, "count": 1}]}
                            ).raise_for_status()
        system.rep_create_contact(email="during@ex.test", hubspotscore=150)
        system.flush()
        _wait("a job running", lambda: system.conn.zcard("rq:wip:hubspot") > 0, 20)
        private_redis.stop()

        # Redis is down: one worker is started now, another is stopped by SIGTERM in its backoff.
        late = WorkerProc(system, tmp_path / "late.log")
        quitter = WorkerProc(system, tmp_path / "quitter.log")
        workers += [late, quitter]
        for w in (busy, late, quitter):
            _wait(f"{w.log.name} to see the outage",
                  lambda w=w: "redis_unavailable" in w.output() or w.proc.poll() is not None, 30)
            assert w.proc.poll() is None, f"{w.log.name} exited:\n{w.output()[-3000:]}"
        quitter.proc.send_signal(signal.SIGTERM)
        assert quitter.proc.wait(5) == 0, quitter.output()
        assert busy.proc.poll() is None, busy.output()
        assert late.proc.poll() is None, late.output()

        # Redis is back (empty: this server keeps no data): a new event is processed.
        private_redis.start()
        system.session.delete(f"{system.base}/_sandbox/faults", timeout=10).raise_for_status()
        after = system.rep_create_contact(email="after@ex.test", hubspotscore=150)
        _wait("the contact created after the outage processed", lambda: (
            system.flush(), system.contact(after).get("contact_status") == "mql")[1], 60)
        system.conn.delete("rq:queue:hubspot")  # undelivered leftovers must not hold up the shutdown

        for w in (busy, late):
            assert w.proc.poll() is None, w.output()
            w.proc.send_signal(signal.SIGTERM)
        for w in (busy, late):
            assert w.proc.wait(30) == 0, w.output()
    finally:
        for w in workers:
            w.stop()
        if private_redis.proc is None:
            private_redis.start()


def test_sigterm_during_the_backoff_ends_the_loop_at_once() -> None:
    """`run_until_stopped` in-process: a worker that cannot reach Redis is rebuilt after a
    doubling wait, and a signal during the wait ends the loop without another worker."""
    from worker.cli_worker import run_until_stopped

    built: list[int] = []
    sleeps: list[float] = []

    class NoRedis:
        name = "no-redis"
        stop_signalled = False

        def work(self, **kwargs: object) -> bool:
            raise redis.exceptions.ConnectionError("Connection refused")

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 7:
            os.kill(os.getpid(), signal.SIGTERM)  # delivered during this wait

    before = signal.getsignal(signal.SIGTERM)
    run_until_stopped(lambda attempt: built.append(attempt) or NoRedis(), redis.Redis(port=1), sleep=sleep)
    assert built == list(range(7))
    assert sleeps == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert signal.getsignal(signal.SIGTERM) is before
