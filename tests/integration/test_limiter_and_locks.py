"""The shared rate limiter and the per-contact locks, against a real Redis."""

from __future__ import annotations

import multiprocessing
import time

import pytest
import redis

from worker.locks import ContactLocks, wait_until_free
from worker.ratelimit import RateLimiter


def test_limiter_admits_the_limit_minus_margin_per_window_then_waits(redis_conn: redis.Redis) -> None:
    sleeps: list[float] = []
    limiter = RateLimiter(redis_conn, 1, requests=10, per_s=1, margin=0.2, sleep=sleeps.append)
    assert limiter.general.limit == 8
    for _ in range(8):
        assert limiter.acquire() == 0.0
    assert sleeps == []
    # the 9th must wait for the oldest entry to leave the 1 s window; the fake sleep returns at once,
    # so the script is asked again until real time has passed
    started = time.monotonic()
    waited = limiter.acquire()
    assert waited > 0 and sleeps
    assert time.monotonic() - started < 2.0
    used, limit = limiter.headroom()
    assert limit == 8 and used <= 8


def test_search_has_its_own_window(redis_conn: redis.Redis) -> None:
    limiter = RateLimiter(redis_conn, 1, requests=100, per_s=10, margin=0.0, search_per_s=2, sleep=lambda s: None)
    assert limiter.searches.limit == 1 and limiter.searches.window_ms == 500  # evenly spaced: 2/s
    assert limiter.acquire(search=True) == 0.0
    assert limiter.acquire(search=True) > 0.0
    assert limiter.acquire() == 0.0  # general calls are not held up by searches


def _hammer(url: str, n: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    limiter = RateLimiter(redis.Redis.from_url(url), 9, requests=20, per_s=1, margin=0.0)
    stamps = []
    for _ in range(n):
        limiter.acquire()
        stamps.append(time.time())
    out.put(stamps)


def test_limiter_is_shared_by_processes(redis_url: str, redis_conn: redis.Redis) -> None:
    out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    procs = [multiprocessing.Process(target=_hammer, args=(redis_url, 15, out)) for _ in range(2)]
    for p in procs:
        p.start()
    stamps = sorted(out.get(timeout=20) + out.get(timeout=20))
    for p in procs:
        p.join(5)
    # 30 requests at 20 per rolling second: never more than 20 inside any 1 s window
    for i, t in enumerate(stamps):
        assert sum(1 for s in stamps[i:] if s - t < 0.999) <= 20
    assert stamps[-1] - stamps[0] >= 0.9


def test_locks_exclude_other_jobs_and_release(redis_conn: redis.Redis) -> None:
    a = ContactLocks(redis_conn, 1, ttl_s=5)
    b = ContactLocks(redis_conn, 1, ttl_s=5)
    assert a.acquire(["1", "2"]) == ({"1", "2"}, set())
    assert b.acquire(["2", "3"]) == ({"3"}, {"2"})
    assert a.still_held(["1", "2", "3"]) == {"1", "2"}
    a.release()
    assert b.acquire(["2"]) == ({"2"}, set())
    b.release()
    assert redis_conn.keys("lc:lock:*") == []


def test_a_lock_whose_holder_died_expires_and_the_owner_check_sees_it(redis_conn: redis.Redis) -> None:
    dead = ContactLocks(redis_conn, 1, ttl_s=0.3)
    dead.acquire(["5"])
    dead._stop.set()  # the holder's heartbeat stops, as when its process is killed
    time.sleep(0.5)
    other = ContactLocks(redis_conn, 1, ttl_s=5)
    assert other.acquire(["5"]) == ({"5"}, set())
    assert dead.still_held(["5"]) == set()
    other.release()


def test_heartbeat_keeps_a_long_job_s_lock(redis_conn: redis.Redis) -> None:
    with ContactLocks(redis_conn, 1, ttl_s=0.3) as locks:
        locks.acquire(["8"])
        time.sleep(0.8)
        assert locks.still_held(["8"]) == {"8"}


def test_a_deferred_job_waits_for_its_locks_and_goes_on_once_they_are_free(redis_conn: redis.Redis) -> None:
    contact = ContactLocks(redis_conn, 1, ttl_s=5)
    company = ContactLocks(redis_conn, 1, ttl_s=5, prefix="company:")
    contact.acquire(["7"])
    company.acquire(["9"])
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 2:
            contact.release()
        if len(polls) == 4:
            company.release()

    assert wait_until_free(redis_conn, 1, ["7", "company:9", "8"], timeout_s=60, sleep=sleep)
    assert len(polls) == 4  # not a poll longer than the last lock
    still = ContactLocks(redis_conn, 1, ttl_s=5)
    still.acquire(["7"])
    started = time.monotonic()
    assert not wait_until_free(redis_conn, 1, ["7"], timeout_s=0.2)  # then it tries, and defers again
    assert time.monotonic() - started >= 0.2
    still.release()
    assert wait_until_free(redis_conn, 1, [], timeout_s=0, sleep=lambda s: pytest.fail("nothing to wait for"))
