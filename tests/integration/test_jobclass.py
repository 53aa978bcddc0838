"""A worker runs only the lifecycle entry point, whatever a job in Redis names."""

from __future__ import annotations

from pathlib import Path

import redis
from rq import SimpleWorker
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from worker.deps import make_queue
from worker.jobclass import LifecycleJob
from worker.settings import load_settings


def test_a_job_naming_another_function_is_refused_not_run(redis_conn: redis.Redis, tmp_path: Path) -> None:
    settings = load_settings(environ={})
    queue = make_queue(settings, redis_conn)
    # what an attacker with write access to Redis could plant: a JSON job calling os.system
    marker = tmp_path / "pwned"
    planted = plant_job(redis_conn, settings.worker.queue, "os.system", f"touch {marker}")
    SimpleWorker([queue], connection=redis_conn, serializer=JSONSerializer, job_class=LifecycleJob).work(
        burst=True, logging_level="ERROR")
    registry = FailedJobRegistry(queue=queue)
    assert planted in registry.get_job_ids()
    job = LifecycleJob.fetch(planted, connection=redis_conn, serializer=JSONSerializer)
    assert "refusing to run 'os.system'" in (job.latest_result().exc_string or "")
    assert not marker.exists()


def test_callbacks_are_refused(redis_conn: redis.Redis) -> None:
    job = LifecycleJob.create("worker.jobs.handle_events", args=({},), connection=redis_conn,
                              serializer=JSONSerializer, on_success="os.getcwd")
    job.save()
    fetched = LifecycleJob.fetch(job.id, connection=redis_conn, serializer=JSONSerializer)
    try:
        _ = fetched.success_callback
    except Exception as exc:  # noqa: BLE001 - the class under test raises its own error
        assert "refusing success callback 'os.getcwd'" in str(exc)
    else:
        raise AssertionError("a success callback was accepted")


def plant_job(conn: redis.Redis, name: str, func: str, arg: str) -> str:
    from rq import Queue

    return str(Queue(name, connection=conn, serializer=JSONSerializer, job_class=Job).enqueue(func, arg).id)
