"""`lifecycle worker`: the production RQ worker (the Procfile's `worker:` line)."""

from __future__ import annotations

import os
import sys
import tempfile

import click


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

    SIGTERM is a warm shutdown: the current job finishes, then the worker exits.
    """
    if metrics_port:
        # RQ runs each job in a forked work-horse: metrics must be shared through files,
        # and prometheus-client picks its mode when first imported, so set it up first.
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="lifecycle-worker-metrics-"))
    import redis
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
    if metrics_port:
        _serve_metrics(metrics_port)
    conn = redis.Redis.from_url(settings.redis_url)
    names = list(queue_names) or [settings.worker.queue]
    if processes > 1:
        WorkerPool(names, connection=conn, num_workers=processes, serializer=JSONSerializer,
                   job_class=LifecycleJob, worker_class=_worker_class()).start(burst=burst)
        return
    set_deps(make_deps(settings, conn))
    queues = [make_queue(settings, conn, name) for name in names]
    w = _worker_class()(queues, connection=conn, serializer=JSONSerializer, job_class=LifecycleJob,
                        name=f"lifecycle-{os.getpid()}")
    w.work(burst=burst, with_scheduler=True, logging_level="WARNING")


def _worker_class() -> type:
    """RQ's Worker, looking for abandoned jobs every 30 s instead of every 600 s.

    RQ's defaults check for the jobs of a killed worker every 600 s and let an idle worker
    block 405 s between looks at the clock; the chaos runs measured recovery within about a
    minute with these settings (docs/chaos.md).
    """
    from rq import Worker

    class LifecycleWorker(Worker):
        def __init__(self, *args: object, **kwargs: object) -> None:
            kwargs.setdefault("maintenance_interval", 30)
            kwargs.setdefault("worker_ttl", 45)
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    return LifecycleWorker


def _serve_metrics(port: int) -> None:
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    start_http_server(port, registry=registry)
