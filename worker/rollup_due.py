"""Rollups a job owes, kept in Redis from the contact write until its rollup is done.

A job writes a contact's new status, then rolls up its companies. A job that dies in between
(SIGKILL, OOM, a lost machine, an error in the rollup) is run again, but then the contact
already holds its new status: the rules decide "nothing to do", and nothing would roll its
companies up or make the converted contact their POC (chaos soak, docs/chaos.md Finding 10).
So right before the write the job records, per contact, that a rollup is due (`rollup`, or
`poc` when the contact becomes its companies' POC); whichever job next holds that contact's
lock (the rerun, a deferred job, any later event) rolls its companies up too, and the record
goes only once the rollup, and the requeue of companies another job was rolling up, are done.

Keys: `lc:rollup-due:<portal>:<contact>` = "rollup" | "poc", with the failure TTL (a job left in
the failed registry that long is gone anyway). Only the holder of the contact's lock reads or
writes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from worker.deps import Deps

ROLLUP, POC = "rollup", "poc"


def _key(deps: Deps, contact_id: str) -> str:
    return f"lc:rollup-due:{deps.portal_id}:{contact_id}"


def owed(deps: Deps, contact_ids: Iterable[str]) -> dict[str, str]:
    """The rollups an earlier run left due for these (locked) contacts: {contact: rollup|poc}."""
    ids = sorted(contact_ids)
    if not ids:
        return {}
    values = deps.redis.mget([_key(deps, cid) for cid in ids])
    return {cid: v.decode() for cid, v in zip(ids, values, strict=True) if v}


def record(deps: Deps, rollups: Iterable[str], pocs: Iterable[str]) -> set[str]:
    """Before the contact write: these contacts' rollups (and POCs) are due. Returns the ids."""
    due = dict.fromkeys(rollups, ROLLUP) | dict.fromkeys(pocs, POC)
    if due:
        ttl = deps.settings.worker.failure_ttl_s
        pipe = deps.redis.pipeline(transaction=False)
        for cid, kind in due.items():
            pipe.set(_key(deps, cid), kind, ex=ttl)
        pipe.execute()
    return set(due)


def settle(deps: Deps, contact_ids: Iterable[str]) -> None:
    """After the rollup (and the requeue of busy companies): nothing is due for these any more."""
    keys = [_key(deps, cid) for cid in sorted(set(contact_ids))]
    if keys:
        deps.redis.delete(*keys)


def pocs(due: Mapping[str, str]) -> list[str]:
    return sorted(cid for cid, kind in due.items() if kind == POC)
