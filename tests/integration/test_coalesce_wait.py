"""Coalescing under a burst (worker/coalesce.py): a job waits while the queue is still growing, one
job at a time waits and absorbs, and a rerun takes nothing new. Real Redis and RQ jobs; the waits
are counted in polls, not timed."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from rq.job import Job

from worker import coalesce
from worker.deps import Deps, make_queue
from worker.jobs import enqueue_payload
from worker.settings import Settings, load_settings

ENV = {"HUBSPOT_CLIENT_SECRET": "s", "HUBSPOT_ACCESS_TOKEN": "t", "HUBSPOT_APP_ID": "4242"}


@pytest.fixture()
def deps(redis_conn: redis.Redis) -> Deps:
    settings: Settings = load_settings(environ=ENV)
    return Deps(settings=settings, redis=redis_conn, hubspot=None, limiter=None)  # type: ignore[arg-type]


def _payload(cid: str) -> dict[str, Any]:
    return {"v": 1, "portal_id": 62515, "source": "webhook", "contacts": {cid: []}, "emails": {}, "companies": {}}


class Arrivals:
    """A `sleep` that lets `per_poll[i]` more jobs arrive during the i-th poll."""

    def __init__(self, conn: redis.Redis, key: str, per_poll: list[int]) -> None:
        self.conn, self.key, self.per_poll, self.polls = conn, key, list(per_poll), 0

    def __call__(self, seconds: float) -> None:
        n = self.per_poll[self.polls] if self.polls < len(self.per_poll) else 0
        self.polls += 1
        for i in range(n):
            self.conn.rpush(self.key, f"arrived-{self.polls}-{i}")


def test_a_job_waits_while_the_queue_grows_and_goes_on_once_it_stops(deps: Deps) -> None:
    queue = deps.queue()
    deps.redis.rpush(queue.key, "first")
    arrivals = Arrivals(deps.redis, queue.key, [5, 3, 0, 1, 0, 0, 7])
    coalesce.wait_for_growth(deps, queue, 30.0, sleep=arrivals)
    assert arrivals.polls == 6  # a pause of one poll is not the end; two still polls are: the 7 are not waited for
    assert deps.redis.llen(queue.key) == 10


def test_at_a_low_rate_a_job_looks_once_and_goes_on(deps: Deps) -> None:
    queue = deps.queue()
    arrivals = Arrivals(deps.redis, queue.key, [0, 4])
    coalesce.wait_for_growth(deps, queue, 30.0, sleep=arrivals)
    assert arrivals.polls == 1
    arrivals = Arrivals(deps.redis, queue.key, [])
    coalesce.wait_for_growth(deps, queue, 0.0, sleep=arrivals)  # coalesce_wait_s: 0 turns it off
    assert arrivals.polls == 0


def test_a_queue_that_keeps_growing_is_waited_for_at_most_the_configured_time(deps: Deps) -> None:
    queue = deps.queue()
    arrivals = Arrivals(deps.redis, queue.key, [1] * 10_000)

    def sleep(seconds: float) -> None:
        import time

        arrivals(seconds)
        time.sleep(seconds)

    waited = coalesce.wait_for_growth(deps, queue, 0.5, sleep=sleep)
    assert 0 < arrivals.polls < 10_000 and waited >= 0.5


def _start(deps: Deps) -> Job:
    """What an RQ worker does to the job at the head of the queue: take it off the queue."""
    queue = deps.queue()
    jid = deps.redis.lpop(queue.key)
    assert jid is not None
    return Job.fetch(jid.decode(), connection=deps.redis, serializer=queue.serializer)


def test_one_job_at_a_time_waits_and_absorbs(deps: Deps) -> None:
    queue = make_queue(deps.settings, deps.redis)
    for i in range(6):
        enqueue_payload(deps, _payload(str(i)))
    job = _start(deps)
    key = coalesce.absorbing_key(queue)
    deps.redis.set(key, "another-job")
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 2:
            deps.redis.delete(key)  # the other job has absorbed what it wanted

    ids, payloads = coalesce.wait_and_absorb(deps, job, queue, job.args[0], 1000, sleep=sleep)
    assert len(polls) >= 3  # twice for the holder, then once to see the queue is not growing
    assert len(ids) == 5 and sorted(next(iter(p["contacts"])) for p in payloads) == ["1", "2", "3", "4", "5"]
    assert deps.redis.llen(queue.key) == 0 and not deps.redis.exists(key)  # its own hold released
    # A rerun of the same job (retry, replay) takes the same absorbed jobs, without waiting.
    enqueue_payload(deps, _payload("9"))
    deps.redis.set(key, "another-job")
    again, _ = coalesce.wait_and_absorb(deps, job, queue, job.args[0], 1000,
                                        sleep=lambda s: pytest.fail("a rerun must not wait"))
    assert again == ids and deps.redis.llen(queue.key) == 1
