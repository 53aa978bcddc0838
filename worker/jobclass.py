"""The only RQ Job class the worker executes: it runs nothing but this project's entry point.

RQ imports a job's function (and callbacks) by the dotted name stored in Redis; the JSON
serializer stops unpickling, not that. Anyone able to write to Redis could otherwise make a
worker call any importable function with JSON arguments. `LifecycleJob` refuses every job
whose function is not in `ALLOWED`, that is bound to an instance, or that names a callback.
"""

from __future__ import annotations

from typing import Any

from rq.job import Job

from worker.errors import PayloadError

ALLOWED = frozenset({"worker.jobs.handle_events"})


class UnsafeJobError(PayloadError):
    """A job in Redis names a function or callback the worker will not run."""


class LifecycleJob(Job):
    """An RQ Job that only ever runs `worker.jobs.handle_events`."""

    @property
    def func(self) -> Any:
        if self.func_name not in ALLOWED or self.instance is not None:
            raise UnsafeJobError(f"job {self.id}: refusing to run {self.func_name!r} (not a lifecycle entry point)")
        return super().func

    def _refuse_callback(self, kind: str, name: str | None) -> None:
        if name:
            raise UnsafeJobError(f"job {self.id}: refusing {kind} callback {name!r}")

    @property
    def success_callback(self) -> Any:
        self._refuse_callback("success", self._success_callback_name)
        return None

    @property
    def failure_callback(self) -> Any:
        self._refuse_callback("failure", self._failure_callback_name)
        return None

    @property
    def stopped_callback(self) -> Any:
        self._refuse_callback("stopped", self._stopped_callback_name)
        return None
