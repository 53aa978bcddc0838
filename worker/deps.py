"""The worker's dependencies, built once per process from Settings (the only wiring point)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from worker.hubspot import HubSpotGateway
from worker.jobclass import LifecycleJob
from worker.ratelimit import RateLimiter
from worker.settings import Settings, load_settings


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Deps:
    settings: Settings
    redis: redis.Redis
    hubspot: HubSpotGateway
    limiter: RateLimiter
    clock_ms: Callable[[], int] = field(default=now_ms)

    @property
    def portal_id(self) -> int:
        return self.settings.portal_id

    def queue(self) -> Queue:
        return make_queue(self.settings, self.redis)


def make_queue(settings: Settings, conn: redis.Redis, name: str | None = None) -> Queue:
    """The worker's queue: JSON serializer, and a Job class that runs only our entry point."""
    return Queue(name or settings.worker.queue, connection=conn, serializer=JSONSerializer,
                 default_timeout=settings.worker.job_timeout_s, job_class=LifecycleJob)


def make_deps(settings: Settings, conn: redis.Redis | None = None) -> Deps:
    """Wire the gateway, limiter and Redis for one portal."""
    settings.require("HUBSPOT_ACCESS_TOKEN")
    conn = conn or redis.Redis.from_url(settings.redis_url)
    rl = settings.worker.rate_limit
    limiter = RateLimiter(conn, settings.portal_id, requests=rl.requests, per_s=rl.per_s, margin=rl.margin,
                          search_per_s=rl.search_per_s)
    gateway = HubSpotGateway(access_token=settings.access_token or "", base_url=settings.hubspot_base_url,
                             limiter=limiter, request_timeout=tuple(settings.worker.request_timeout_s),  # type: ignore[arg-type]
                             retry_stop_s=settings.worker.http_retry_stop_s,
                             concurrency=settings.worker.http_concurrency)
    return Deps(settings=settings, redis=conn, hubspot=gateway, limiter=limiter)


_DEPS: Deps | None = None


def build_deps() -> Deps:
    """The process's Deps, built on first use (after fork, redis-py reconnects by itself)."""
    global _DEPS
    if _DEPS is None:
        _DEPS = make_deps(load_settings())
    return _DEPS


def set_deps(deps: Deps | None) -> None:
    """Install Deps for this process (the worker command, tests)."""
    global _DEPS
    _DEPS = deps
