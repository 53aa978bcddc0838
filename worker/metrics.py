"""Prometheus metrics of the worker process (HubSpot calls, jobs, limiter, lag).

`lifecycle worker --metrics-port N` serves them; RQ forks a work-horse per job, so the
worker uses prometheus-client's multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

HUBSPOT_CALLS = Counter("lifecycle_hubspot_calls_total", "HubSpot API calls by endpoint and outcome",
                        ["endpoint", "status"])
RATE_LIMITED = Counter("lifecycle_hubspot_429_total", "429 answers received from HubSpot")
LIMITER_WAIT = Histogram("lifecycle_limiter_wait_seconds", "Time spent waiting for the shared rate limiter",
                         buckets=(0, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30))
JOBS = Counter("lifecycle_jobs_total", "Jobs processed by outcome", ["outcome"])
CONTACTS = Counter("lifecycle_contacts_total", "Contacts evaluated by outcome", ["outcome"])
LAG = Histogram("lifecycle_event_lag_seconds", "From the event's occurredAt to its write-back",
                buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600))
REAPER = Counter("lifecycle_reaper_actions_total",
                 "Abandoned-job reaper: executions of dead workers recovered, replays, overdue scheduled jobs",
                 ["action"])
