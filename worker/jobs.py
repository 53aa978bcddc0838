"""RQ entry points, enqueued by dotted path ("worker.jobs.handle_events") with JSONSerializer.

A job's one argument is a JSON-plain payload made by the webhook endpoint (or by
reconcile/replay/deferral): {"v": 1, "portal_id", "source", "contacts": {id: [events]},
"emails": {address: [email events]}, "companies": {id: [events]}}. Transient HubSpot
failures raise: RQ retries the job on the intervals set at enqueue time and then leaves it
in the FailedJobRegistry, where `lifecycle replay` finds it.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from rq import get_current_job
from rq.job import Job

from worker import coalesce, metrics
from worker.deps import Deps, build_deps
from worker.errors import HubSpotError
from worker.process import Inbox, process_inbox

log = structlog.get_logger(__name__)


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
    if job is not None:
        absorbed, more = coalesce.wait_and_absorb(deps, job, queue, payload,
                                                  deps.settings.worker.coalesce_max_contacts)
        payloads += more
    inbox = Inbox.of(payloads)
    if inbox.deferrals:
        time.sleep(min(0.1 * inbox.deferrals, 2.0))  # give the lock holder time to finish

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


def enqueue_payload(deps: Deps, payload: dict[str, Any], *, job_id: str | None = None) -> Job:
    """Enqueue a payload for `handle_events` with the configured timeouts and retries."""
    from rq import Retry

    w = deps.settings.worker
    return deps.queue().enqueue(
        coalesce.JOB_FUNC, payload, job_id=job_id, job_timeout=w.job_timeout_s, result_ttl=w.result_ttl_s,
        failure_ttl=w.failure_ttl_s, retry=Retry(max=len(w.retry_intervals_s), interval=list(w.retry_intervals_s)))
