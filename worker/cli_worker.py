"""`lifecycle worker`: the production RQ worker (the Procfile's `worker:` line)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import click
import redis
import structlog


@click.command("worker")
@click.option("--burst", is_flag=True, help="Exit when the queue is empty.")
@click.option("--queues", "queue_names", multiple=True, help="Queues to listen on (default: worker.queue).")
@click.option("--processes", type=click.IntRange(1, 64), default=1, show_default=True,
              envvar="LIFECYCLE_WORKER_PROCESSES", help="Worker processes (an RQ worker pool when > 1).")
@click.option("--config", "config", envvar="LIFECYCLE_CONFIG", help="config.yaml to use.")
@click.option("--metrics-port", type=int, envvar="LIFECYCLE_METRICS_PORT", help="Serve Prometheus metrics here.")
def worker(burst: bool, queue_names: tuple[str, ...], processes: int, config: str | None,
           metrics_port: int | None) -> None:
    """Run RQ workers that apply the lifecycle rules to queued webhook events.

    SIGTERM is a warm shutdown: the current job finishes, then the worker exits. A reaper
    thread recovers the jobs of dead workers within seconds (`worker.reaper` in config.yaml).
    """
    if metrics_port:
        # RQ runs each job in a forked work-horse: metrics must be shared through files,
        # and prometheus-client picks its mode when first imported, so set it up first.
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="lifecycle-worker-metrics-"))
    from rq.serializers import JSONSerializer
    from rq.worker_pool import WorkerPool

    from worker.deps import make_deps, make_queue, set_deps
    from worker.errors import ConfigError
    from worker.jobclass import LifecycleJob
    from worker.logs import configure_logging
    from worker.settings import load_settings

    try:
        settings = load_settings(config)
        settings.require("HUBSPOT_ACCESS_TOKEN")
    except ConfigError as exc:
        click.echo(f"lifecycle worker: {exc}", err=True)
        sys.exit(2)
    configure_logging()
    # RQ runs each job in a forked work horse: imported here once, the job code (and the SDK it
    # pulls in) is inherited by every horse instead of being imported again for each job.
    import worker.jobs  # noqa: F401

    if metrics_port:
        _serve_metrics(metrics_port)
    conn = redis.Redis.from_url(settings.redis_url)
    names = list(queue_names) or [settings.worker.queue]
    reaper = _start_reaper(settings, names)
    try:
        if processes > 1:
            WorkerPool(names, connection=conn, num_workers=processes, serializer=JSONSerializer,
                       job_class=LifecycleJob, worker_class=_worker_class()).start(burst=burst)
            return
        set_deps(make_deps(settings, conn))
        queues = [make_queue(settings, conn, name) for name in names]
        worker_class = _worker_class()

        def build(attempt: int) -> Any:
            name = f"lifecycle-{os.getpid()}" + (f"-{attempt}" if attempt else "")
            return worker_class(queues, connection=conn, serializer=JSONSerializer, job_class=LifecycleJob,
                                name=name)

        run_until_stopped(build, conn, burst=burst)
    finally:
        if reaper is not None:
            reaper.stop()


def _start_reaper(settings: Any, names: list[str]) -> Any:
    """One abandoned-job reaper per `lifecycle worker` command (also with --processes N), in a
    daemon thread of the main process, unless `worker.reaper.enabled` is false."""
    if not settings.worker.reaper.enabled:
        return None
    from worker.reaper import Reaper

    return Reaper.for_worker(settings, names).start()


BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0


class _Stop(BaseException):
    """SIGTERM or SIGINT while no RQ worker is listening for them (backoff, start-up)."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop()


def run_until_stopped(build: Callable[[int], Any], conn: redis.Redis, *, burst: bool = False,
                      sleep: Callable[[float], None] = time.sleep) -> None:
    """Run RQ workers one after another until one ends normally or a stop is signalled.

    RQ's `work()` gives up when Redis goes away: an error during a job ends its loop (RQ logs
    "found an unhandled exception, quitting"), and registering the worker's birth or death
    raises `ConnectionError` while Redis is down. Each time, this logs `redis_unavailable`,
    waits (1 s, doubling to 30 s) and builds a new worker, under a new name (the old one's
    registration may outlive it in Redis). It returns when a worker stops on SIGTERM/SIGINT
    (a warm shutdown: the current job finishes), when a burst is done, and at once on a
    signal during the wait. The horse of a job the old worker abandoned is left to finish or
    fail on its own; its job is recovered as any abandoned job is (docs/chaos.md, finding 7).
    """
    from rq.exceptions import StopRequested

    log = structlog.get_logger("worker.cli_worker")
    delay = BACKOFF_FIRST_S
    attempt = 0
    previous_handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def own_signals() -> None:
        for sig in previous_handlers:
            signal.signal(sig, _raise_stop)

    try:
        own_signals()
        while True:
            started = time.monotonic()
            w: Any = None
            error: BaseException | None = None
            try:
                w = build(attempt)  # RQ's Worker talks to Redis as it is built
                w.work(burst=burst, with_scheduler=True, logging_level="WARNING")  # installs RQ's handlers
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                error = exc
            finally:
                own_signals()
            attempt += 1
            if getattr(w, "stop_signalled", False):
                return
            if error is None and burst:
                return
            _reap_horse_later(w)
            if time.monotonic() - started > BACKOFF_MAX_S:
                delay = BACKOFF_FIRST_S  # it ran a while: this is a new outage
            down = error is not None or not _answers(conn)
            log.warning("redis_unavailable" if down else "worker_quit_unexpectedly",
                        error=str(error) if error else "RQ's work loop ended on an error (see RQ's log)",
                        worker=getattr(w, "name", None), retry_in_s=delay)
            sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX_S)
    except (_Stop, StopRequested):  # StopRequested: RQ's handler, in the instant before ours is back
        return
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)


def _answers(conn: redis.Redis) -> bool:
    try:
        return bool(conn.ping())
    except redis.exceptions.RedisError:
        return False


def _reap_horse_later(w: Any) -> None:
    """Wait for a work horse the worker left running, so it does not stay a zombie."""
    pid = getattr(w, "horse_pid", 0)
    if not pid:
        return

    def wait() -> None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

    threading.Thread(target=wait, name=f"reap-horse-{pid}", daemon=True).start()


def _worker_class() -> type:
    """RQ's Worker, looking for abandoned jobs every 30 s instead of every 600 s.

    RQ's defaults check for the jobs of a killed worker every 600 s and let an idle worker
    block 405 s between looks at the clock; the chaos runs measured recovery within about a
    minute with these settings (docs/chaos.md). The reaper (worker/reaper.py) does it in
    seconds; each work horse's pid goes into the worker's hash for it, so that a horse that
    outlives its worker is left to finish its job.
    """
    from rq import Worker

    from worker.reaper import HORSE_PID_FIELD

    class LifecycleWorker(Worker):
        stop_signalled = False  # SIGTERM/SIGINT arrived: `run_until_stopped` must not start another

        def __init__(self, *args: object, **kwargs: object) -> None:
            kwargs.setdefault("maintenance_interval", 30)
            kwargs.setdefault("worker_ttl", 45)
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]

        def fork_work_horse(self, job: Any, queue: Any) -> None:
            super().fork_work_horse(job, queue)  # returns in the parent only
            with contextlib.suppress(redis.exceptions.RedisError):  # a hint for the reaper, no more
                self.connection.hset(self.key, HORSE_PID_FIELD, str(self.horse_pid))

        def request_stop(self, signum: int, frame: FrameType | None) -> None:
            self.stop_signalled = True  # first: RQ's handler itself may fail on Redis
            super().request_stop(signum, frame)  # type: ignore[no-untyped-call]

        def request_force_stop(self, signum: int, frame: FrameType | None) -> None:
            self.stop_signalled = True
            super().request_force_stop(signum, frame)

    return LifecycleWorker


def _serve_metrics(port: int) -> None:
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    start_http_server(port, registry=registry)
