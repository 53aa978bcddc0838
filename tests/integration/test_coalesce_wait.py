"""Coalescing under a burst (worker/coalesce.py): a job keeps taking jobs while they arrive, one job
at a time does so, jobs are taken in pipelined batches without losing or reordering any, and a
rerun takes nothing new. Real Redis and RQ jobs; the waits are counted in looks, not timed."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import pytest
import redis
from rq.job import Job

from worker import coalesce
from worker.deps import Deps
from worker.jobs import copy_job, enqueue_payload
from worker.settings import load_settings

ENV = {"HUBSPOT_CLIENT_SECRET": "s", "HUBSPOT_ACCESS_TOKEN": "t", "HUBSPOT_APP_ID": "4242"}


@pytest.fixture()
def deps(redis_conn: redis.Redis) -> Deps:
    return Deps(settings=load_settings(environ=ENV), redis=redis_conn, hubspot=None,  # type: ignore[arg-type]
                limiter=None)  # type: ignore[arg-type]


def _payload(cid: str) -> dict[str, Any]:
    return {"v": 1, "portal_id": 62515, "source": "webhook", "contacts": {cid: []}, "emails": {}, "companies": {}}


def _start(deps: Deps) -> Job:
    """What an RQ worker does to the job at the head of the queue: take it off the queue."""
    queue = deps.queue()
    jid = deps.redis.lpop(queue.key)
    assert jid is not None
    return Job.fetch(jid.decode(), connection=deps.redis, serializer=queue.serializer)


class Arrivals:
    """A `sleep` during whose i-th call `per_look[i]` more jobs are queued."""

    def __init__(self, deps: Deps, per_look: list[int], *, real_sleep: bool = False) -> None:
        self.deps, self.per_look, self.looks, self.real_sleep, self.sent = deps, list(per_look), 0, real_sleep, 0
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        n = self.per_look[self.looks] if self.looks < len(self.per_look) else 0
        self.looks += 1
        for _ in range(n):
            self.sent += 1
            enqueue_payload(self.deps, _payload(f"late-{self.sent}"))
        if self.real_sleep:
            time.sleep(seconds)


def _contacts(payloads: list[dict[str, Any]]) -> list[str]:
    return [c for p in payloads for c in p["contacts"]]


def test_a_job_keeps_taking_while_jobs_arrive_and_goes_on_once_they_stop(deps: Deps) -> None:
    enqueue_payload(deps, _payload("own"))
    for i in range(250):  # more than one pipelined batch
        enqueue_payload(deps, _payload(f"early-{i}"))
    job = _start(deps)
    arrivals = Arrivals(deps, [5, 3, 0, 1, 0, 0, 0, 0, 7])
    ids, payloads = coalesce.wait_and_absorb(deps, job, deps.queue(), job.args[0], 10_000, sleep=arrivals)
    assert coalesce.QUIET_POLLS == 4
    assert arrivals.looks == 8  # up to three looks with nothing new are a pause; four in a row are the end
    assert arrivals.waits == [coalesce.FIRST_LOOK_S] + [coalesce.GROWTH_POLL_S] * 7
    assert _contacts(payloads) == [f"early-{i}" for i in range(250)] + [f"late-{i}" for i in range(1, 10)]
    assert len(ids) == 259 and arrivals.sent == 9 and deps.redis.llen(deps.queue().key) == 0
    assert not deps.redis.exists(coalesce.absorbing_key(deps.queue()))


def test_at_a_low_rate_a_job_looks_once_and_goes_on(deps: Deps) -> None:
    enqueue_payload(deps, _payload("own"))
    job = _start(deps)
    arrivals = Arrivals(deps, [0, 4])
    ids, _ = coalesce.wait_and_absorb(deps, job, deps.queue(), job.args[0], 1000, sleep=arrivals)
    assert arrivals.looks == 1 and ids == [] and arrivals.waits == [coalesce.FIRST_LOOK_S]


def _waiting(deps: Deps, seconds: float) -> Deps:
    worker = deps.settings.worker.model_copy(update={"coalesce_wait_s": seconds})
    return dataclasses.replace(deps, settings=dataclasses.replace(deps.settings, worker=worker))


def test_coalesce_wait_0_takes_what_is_queued_without_looking_again(deps: Deps) -> None:
    deps = _waiting(deps, 0.0)
    for cid in ("own", "a", "b"):
        enqueue_payload(deps, _payload(cid))
    job = _start(deps)
    ids, payloads = coalesce.wait_and_absorb(deps, job, deps.queue(), job.args[0], 1000,
                                             sleep=lambda s: pytest.fail("no look with coalesce_wait_s: 0"))
    assert _contacts(payloads) == ["a", "b"]


def test_jobs_that_keep_arriving_are_waited_for_at_most_coalesce_wait_s(deps: Deps) -> None:
    deps = _waiting(deps, 0.5)
    enqueue_payload(deps, _payload("own"))
    job = _start(deps)
    arrivals = Arrivals(deps, [1] * 10_000, real_sleep=True)
    ids, _ = coalesce.wait_and_absorb(deps, job, deps.queue(), job.args[0], 10_000, sleep=arrivals)
    assert 0 < arrivals.looks < 10_000 and len(ids) == arrivals.sent  # it stopped, with all that came


def _queued(deps: Deps) -> list[str]:
    queue = deps.queue()
    return [c for j in deps.redis.lrange(queue.key, 0, -1)
            for c in Job.fetch(j.decode(), connection=deps.redis, serializer=queue.serializer).args[0]["contacts"]]


def test_the_cap_and_a_rerun_end_the_taking_and_keep_the_queue_order(deps: Deps) -> None:
    for cid in ("own", "0", "1", "2", "3", "4"):
        enqueue_payload(deps, _payload(cid))
    job = _start(deps)
    _, payloads = coalesce.absorb(deps, job, deps.queue(), job.args[0], 3)  # own + 2 = 3 contacts
    assert _contacts(payloads) == ["0", "1"]
    assert _queued(deps) == ["2", "3", "4"]  # the rest of the batch given back to the front, in order
    # Job "3" is a rerun (retry, abandoned, replay) with absorbed jobs of its own: only it processes them.
    rerun = deps.redis.lindex(deps.queue().key, 1)
    assert rerun is not None
    deps.redis.rpush(coalesce.absorbed_key(rerun.decode()), "its-own")
    enqueue_payload(deps, _payload("next"))
    nxt = deps.redis.rpop(deps.queue().key)
    assert nxt is not None
    other = Job.fetch(nxt.decode(), connection=deps.redis, serializer=deps.queue().serializer)
    _, payloads = coalesce.absorb(deps, other, deps.queue(), other.args[0], 1000)
    assert _contacts(payloads) == ["2"] and _queued(deps) == ["3", "4"]


def test_one_job_at_a_time_waits_and_absorbs(deps: Deps) -> None:
    queue = deps.queue()
    for i in range(6):
        enqueue_payload(deps, _payload(str(i)))
    job = _start(deps)
    key = coalesce.absorbing_key(queue)
    deps.redis.set(key, "another-job")
    looks: list[float] = []

    def sleep(seconds: float) -> None:
        looks.append(seconds)
        if len(looks) == 2:
            deps.redis.delete(key)  # the other job has absorbed what it wanted

    ids, payloads = coalesce.wait_and_absorb(deps, job, queue, job.args[0], 1000, sleep=sleep)
    assert len(looks) == 3  # twice for the holder, then once to see nothing more arrives
    assert len(ids) == 5 and _contacts(payloads) == ["1", "2", "3", "4", "5"]
    assert deps.redis.llen(queue.key) == 0 and not deps.redis.exists(key)  # its own hold released
    # A rerun of the same job (retry, replay) takes the same absorbed jobs, without waiting.
    enqueue_payload(deps, _payload("9"))
    deps.redis.set(key, "another-job")
    again, _ = coalesce.wait_and_absorb(deps, job, queue, job.args[0], 1000,
                                        sleep=lambda s: pytest.fail("a rerun must not wait"))
    assert again == ids and deps.redis.llen(queue.key) == 1


def test_the_hold_is_renewed_while_taking_and_a_dead_holders_lapses(deps: Deps) -> None:
    queue = deps.queue()
    key = coalesce.absorbing_key(queue)
    enqueue_payload(deps, _payload("own"))
    job = _start(deps)
    ttls: list[int] = []
    arrivals = Arrivals(deps, [1] * 20)

    def sleep(seconds: float) -> None:
        arrivals(seconds)
        ttls.append(int(deps.redis.pttl(key)))

    coalesce.wait_and_absorb(deps, job, queue, job.args[0], 1000, sleep=sleep)
    assert len(ttls) >= 20 and all(0 < t <= coalesce.HOLD_TTL_MS for t in ttls)  # held (and renewed) throughout
    assert not deps.redis.exists(key)
    # A holder killed mid-wait (its hold is left behind): the next job goes on once the hold lapses.
    enqueue_payload(deps, _payload("next"))
    deps.redis.set(key, "a-killed-job", px=300)
    nxt = _start(deps)
    waits: list[float] = []

    def real_sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    coalesce.wait_and_absorb(deps, nxt, queue, nxt.args[0], 1000, sleep=real_sleep)
    assert 1 <= len(waits) <= 10  # looks at the hold until it lapsed (0.3 s), then one look at the queue


def test_a_job_dequeued_while_another_takes_the_burst_hands_its_events_over(deps: Deps) -> None:
    """The second worker's job would otherwise run after the burst's job and find its contacts
    locked by it (deferred until that job ends): its copy is taken with the burst instead."""
    queue = deps.queue()
    for cid in ("holder", "waiter", "queued"):
        enqueue_payload(deps, _payload(cid))
    holder, waiter = _start(deps), _start(deps)
    handover = coalesce.handover_key(queue)
    outcome: dict[str, Any] = {}

    def second_worker() -> None:
        outcome["taken"] = coalesce.wait_and_absorb(deps, waiter, queue, waiter.args[0], 1000,
                                                    hand_over=lambda: copy_job(deps, waiter.args[0]))

    thread = threading.Thread(target=second_worker)

    def holder_looks(seconds: float) -> None:
        if not thread.is_alive() and "taken" not in outcome:  # first look: the second worker's job starts
            thread.start()
            deadline = time.monotonic() + 10
            while not deps.redis.llen(handover) and time.monotonic() < deadline:
                time.sleep(0.01)

    ids, payloads = coalesce.wait_and_absorb(deps, holder, queue, holder.args[0], 1000, sleep=holder_looks)
    thread.join(10)
    assert outcome["taken"] is None  # nothing left for the second worker's job to do
    assert _contacts(payloads) == ["queued", "waiter"]
    copy = Job.fetch(ids[-1], connection=deps.redis, serializer=queue.serializer)
    assert copy.args[0] == waiter.args[0] and copy.id != waiter.id
    assert copy.timeout == deps.settings.worker.job_timeout_s and copy.retries_left is not None
    assert deps.redis.llen(handover) == 0 and deps.redis.llen(queue.key) == 0
    assert not deps.redis.exists(coalesce.absorbing_key(queue))


def test_a_copy_the_holder_did_not_take_is_taken_back(deps: Deps) -> None:
    queue = deps.queue()
    for cid in ("own", "a"):
        enqueue_payload(deps, _payload(cid))
    job = _start(deps)
    key, handover = coalesce.absorbing_key(queue), coalesce.handover_key(queue)
    deps.redis.set(key, "another-job")
    copies: list[str] = []

    def hand_over() -> Job:
        copies.append((made := copy_job(deps, job.args[0])).id)
        return made

    polls: list[float] = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        assert deps.redis.lrange(handover, 0, -1) == [copies[0].encode()]  # waits there, not in the queue
        if len(polls) == 3:
            deps.redis.delete(key)  # the holder stopped taking without looking again

    taken = coalesce.wait_and_absorb(deps, job, queue, job.args[0], 1000, sleep=sleep, wait_s=0.0,
                                     hand_over=hand_over)
    assert taken is not None and _contacts(taken[1]) == ["a"]  # it went on as if nothing happened
    assert polls[:3] == [coalesce.HAND_OVER_POLL_S] * 3
    assert deps.redis.llen(handover) == 0 and not deps.redis.exists(Job.key_for(copies[0]))


def test_a_copy_left_behind_by_a_killed_worker_is_taken_by_the_next_job(deps: Deps) -> None:
    queue = deps.queue()
    left = copy_job(deps, _payload("left"))
    left.save()
    deps.redis.rpush(coalesce.handover_key(queue), left.id)
    enqueue_payload(deps, _payload("next"))
    job = _start(deps)
    ids, payloads = coalesce.absorb(deps, job, queue, job.args[0], 1000)
    assert ids == [left.id] and _contacts(payloads) == ["left"]


def test_a_rerun_of_a_job_killed_while_taking_keeps_what_it_took_and_does_not_hand_over(deps: Deps) -> None:
    """Found by the worker-killed chaos scenario (20 contacts lost): a job killed while it was
    taking a burst is run again (reaper, RQ); another job holds the queue by then. Handing over
    a copy of itself would pass on its own events only, and the jobs it had taken (on its
    absorbed list, which no other job takes) would never be processed."""
    queue = deps.queue()
    for cid in ("own", "taken-before-the-kill"):
        enqueue_payload(deps, _payload(cid))
    job = _start(deps)
    before = _start(deps)
    deps.redis.rpush(coalesce.absorbed_key(job.id), before.id)  # what the killed run had taken
    key, handover = coalesce.absorbing_key(queue), coalesce.handover_key(queue)
    deps.redis.set(key, "another-job")
    handed: list[str] = []

    def hand_over() -> Job:
        handed.append("copy")
        return copy_job(deps, job.args[0])

    def sleep(seconds: float) -> None:
        deps.redis.lmove(handover, coalesce.absorbed_key("another-job"), "LEFT", "RIGHT")  # a copy, if any, is taken
        deps.redis.delete(key)  # and the holder lets go

    taken = coalesce.wait_and_absorb(deps, job, queue, job.args[0], 1000, sleep=sleep, hand_over=hand_over)
    assert handed == [] and taken is not None
    ids, payloads = taken
    assert ids == [before.id] and _contacts(payloads) == ["taken-before-the-kill"]
