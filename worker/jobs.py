"""RQ entry points, enqueued by dotted path ("worker.jobs.handle_events") with JSONSerializer.

A job's one argument is a JSON-plain payload made by the webhook endpoint (or by
reconcile/replay/deferral): {"v": 1, "portal_id", "source", "contacts": {id: [events]},
"emails": {address: [email events]}, "companies": {id: [events]}}. Transient HubSpot
failures raise: RQ retries the job on the intervals set at enqueue time and then leaves it
in the FailedJobRegistry, where `lifecycle replay` finds it.
"""

from __future__ import annotations

from typing import Any

import structlog
from rq import get_current_job
from rq.job import Job

from worker import coalesce, locks, metrics
from worker.deps import Deps, build_deps
from worker.errors import HubSpotError
from worker.process import Inbox, process_inbox

log = structlog.get_logger(__name__)
DEFER_WAIT_S = 0.5  # a deferred job waits up to this for its locks, times its deferrals so far ...
DEFER_WAIT_MAX_S = 3.0  # ... and never longer than this (it goes on the moment they are free)


def handle_events(payload: dict[str, Any]) -> dict[str, Any]:
    """Process a payload of events (and the queued jobs this job coalesces with it)."""
    deps = build_deps()
    job = get_current_job()
    with structlog.contextvars.bound_contextvars(job_id=job.id if job else None):
        return run_payload(deps, payload, job)


def run_payload(deps: Deps, payload: dict[str, Any], job: Job | None) -> dict[str, Any]:
    queue = deps.queue()
    absorbed: list[str] = []
    payloads = [payload]
    deferred = int(payload.get("deferrals", 0) or 0)
    if deferred:
        # Its contacts were locked by another job: wait (a little longer each time) for that job to
        # let go, and go on as soon as it does. Such a job takes what is queued without a look.
        locks.wait_until_free(deps.redis, deps.portal_id, _locked_ids(payload),
                              timeout_s=min(DEFER_WAIT_S * deferred, DEFER_WAIT_MAX_S))
    if job is not None:
        taken = coalesce.wait_and_absorb(deps, job, queue, payload, deps.settings.worker.coalesce_max_contacts,
                                         wait_s=0.0 if deferred else None,
                                         hand_over=lambda: copy_job(deps, payload))
        if taken is None:  # the job taking the burst took this one's events too
            metrics.JOBS.labels(outcome="handed_over").inc()
            return {"handed_over": True}
        absorbed, more = taken
        payloads += more
    inbox = Inbox.of(payloads)

    def requeue(deferred: dict[str, Any]) -> None:
        enqueue_payload(deps, deferred)

    try:
        result = process_inbox(deps, inbox, requeue=requeue)
    except HubSpotError as exc:
        metrics.JOBS.labels(outcome="failed").inc()
        log.warning("job_failed", status=exc.status, error=str(exc), retryable=type(exc).__name__)
        raise
    if job is not None:
        coalesce.finish(deps, job.id, absorbed)
    metrics.JOBS.labels(outcome="ok").inc()
    log.info("job_processed", absorbed=len(absorbed), **{k: v for k, v in result.items() if k != "rows"})
    return result


def _locked_ids(payload: dict[str, Any]) -> list[str]:
    """The lock names of a deferred payload: its contacts, and the companies whose rollup it carries."""
    return [str(c) for c in payload.get("contacts") or {}] + \
        [f"company:{c}" for c in payload.get("companies") or {}]


def _options(deps: Deps) -> dict[str, Any]:
    """What every job of `handle_events` is enqueued with: the configured timeouts and retries."""
    from rq import Retry

    w = deps.settings.worker
    return {"result_ttl": w.result_ttl_s, "failure_ttl": w.failure_ttl_s,
            "retry": Retry(max=len(w.retry_intervals_s), interval=list(w.retry_intervals_s))}


def enqueue_payload(deps: Deps, payload: dict[str, Any], *, job_id: str | None = None) -> Job:
    """Enqueue a payload for `handle_events` with the configured timeouts and retries."""
    return deps.queue().enqueue(coalesce.JOB_FUNC, payload, job_id=job_id,
                                job_timeout=deps.settings.worker.job_timeout_s, **_options(deps))


def copy_job(deps: Deps, payload: dict[str, Any]) -> Job:
    """A job like `enqueue_payload`'s, created but neither saved nor queued (coalesce hands it over)."""
    return deps.queue().create_job(coalesce.JOB_FUNC, args=(payload,), timeout=deps.settings.worker.job_timeout_s,
                                   **_options(deps))
