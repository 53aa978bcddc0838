"""Per-contact locks, so two workers never interleave on one contact (no lost updates).

A lock is `SET lc:lock:<portal>:<contact> <token> NX PX ttl` (company rollups use the same
mechanism with the prefix `company:`: `lc:lock:<portal>:company:<company>`), released by a Lua
compare-and-delete and kept alive by a heartbeat thread while the job runs. A worker that
dies stops its heartbeat and its locks expire within `ttl`; before each write-back the job
checks it still holds every lock it writes for (owner check), and contacts whose lock it
lost or never got are deferred to a new job instead of blocking or being dropped.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable

import redis

_RELEASE = """
local released = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('DEL', key)
    released = released + 1
  end
end
return released
"""

_EXTEND = """
local kept = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
    kept = kept + 1
  end
end
return kept
"""


def lock_key(portal_id: int | str, name: str) -> str:
    """A lock's key: `name` is a contact id, or `company:<id>` for a company's rollup."""
    return f"lc:lock:{portal_id}:{name}"


def wait_until_free(conn: redis.Redis, portal_id: int | str, names: Iterable[str], *, timeout_s: float,
                    poll_s: float = 0.05, sleep: Callable[[float], None] = time.sleep) -> bool:
    """Wait until no job holds a lock on `names`, at most `timeout_s`; True when none does.
    (A deferred job's wait: it then tries the locks, and defers again what is still taken.)"""
    keys = [lock_key(portal_id, n) for n in names]
    deadline = time.monotonic() + timeout_s
    while keys and conn.exists(*keys):
        if time.monotonic() >= deadline:
            return False
        sleep(poll_s)
    return True


class ContactLocks:
    """The locks one job holds on a set of contacts (or, with a `prefix`, other objects) of one portal."""

    def __init__(self, conn: redis.Redis, portal_id: int | str, *, ttl_s: float = 30.0, prefix: str = "") -> None:
        self._conn = conn
        self._portal = portal_id
        self._prefix = prefix
        self._ttl_ms = int(ttl_s * 1000)
        self.token = uuid.uuid4().hex
        self.held: set[str] = set()
        self._release = conn.register_script(_RELEASE)
        self._extend = conn.register_script(_EXTEND)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def key(self, contact_id: str) -> str:
        return lock_key(self._portal, f"{self._prefix}{contact_id}")

    def acquire(self, contact_ids: Iterable[str]) -> tuple[set[str], set[str]]:
        """Try every contact once; return (locked, busy). Never blocks."""
        ids = [c for c in dict.fromkeys(contact_ids) if c not in self.held]
        pipe = self._conn.pipeline(transaction=False)
        for cid in ids:
            pipe.set(self.key(cid), self.token, nx=True, px=self._ttl_ms)
        results = pipe.execute()
        locked = {cid for cid, ok in zip(ids, results, strict=True) if ok}
        self.held |= locked
        if locked and self._thread is None:
            self._start_heartbeat()
        return locked, set(ids) - locked

    def still_held(self, contact_ids: Iterable[str]) -> set[str]:
        """The subset of `contact_ids` whose lock this job still owns."""
        ids = list(contact_ids)
        if not ids:
            return set()
        values = self._conn.mget([self.key(c) for c in ids])
        token = self.token.encode()
        return {cid for cid, v in zip(ids, values, strict=True) if v == token}

    def release_some(self, contact_ids: Iterable[str]) -> None:
        """Let go of some locks early (contacts that turned out to have nothing to do)."""
        ids = [c for c in dict.fromkeys(contact_ids) if c in self.held]
        if ids:
            self._release(keys=[self.key(c) for c in ids], args=[self.token])
            self.held -= set(ids)

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        if self.held:
            self._release(keys=[self.key(c) for c in self.held], args=[self.token])
        self.held.clear()

    def _start_heartbeat(self) -> None:
        def beat() -> None:
            while not self._stop.wait(self._ttl_ms / 3000.0):
                try:
                    if self.held:
                        self._extend(keys=[self.key(c) for c in list(self.held)], args=[self.token, self._ttl_ms])
                except redis.RedisError:
                    pass  # the owner check before writing catches a lock lost meanwhile
        self._thread = threading.Thread(target=beat, name="contact-lock-heartbeat", daemon=True)
        self._thread.start()

    def __enter__(self) -> ContactLocks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
