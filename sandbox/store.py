"""The in-memory portal: CRM records, their property history and associations, behind one lock.

Every mutation validates first (raising HubSpotError before changing anything), then applies the
change, maintains the system properties (hs_object_id, createdate, lastmodifieddate...), appends
history, and hands the resulting Change list to the listeners (webhook delivery) in order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from .errors import conflict, not_found, property_errors, validation
from .graph import AssociationGraph
from .model import Actor, Change, HistoryEntry, Record
from .objecttypes import OBJECT_TYPES
from .schema import PropertySchema
from .store_links import AssociationOps, AssocInput
from .timeutil import iso_from_ms, now_ms

__all__ = ["Store", "SYSTEM_PROPS", "AssocInput"]

# Maintained by the store; never reported as propertyChange events (HubSpot refuses subscriptions to
# hs_lastmodifieddate and these are not user data).
SYSTEM_PROPS = frozenset(
    {
        "hs_object_id",
        "createdate",
        "lastmodifieddate",
        "hs_lastmodifieddate",
        "hs_createdate",
        "hs_merged_object_ids",
    }
)
_REQUIRES_TIMESTAMP = frozenset({"tasks", "notes"})


def _snap(rec: Record) -> Record:
    return Record(
        rec.object_type,
        rec.id,
        dict(rec.properties),
        {k: list(v) for k, v in rec.history.items()},
        rec.created_ms,
        rec.updated_ms,
        rec.archived,
        rec.archived_ms,
    )


class Store(AssociationOps):
    """Thread-safe object store. Reads return snapshots, never the live records."""

    def __init__(
        self, schema: PropertySchema, clock: Callable[[], int] = now_ms, first_id: int = 1001
    ) -> None:
        self.schema = schema
        self._clock = clock
        self._lock = threading.RLock()
        self._records: dict[str, dict[int, Record]] = {t: {} for t in OBJECT_TYPES}
        self._merged: dict[tuple[str, int], int] = {}
        self._emails: dict[str, int] = {}
        self._graph = AssociationGraph()
        self._next_id = first_id
        self._listeners: list[Callable[[list[Change]], None]] = []
        self._silent = 0

    # ---- plumbing ----------------------------------------------------------------------------
    def add_listener(self, listener: Callable[[list[Change]], None]) -> None:
        """Call `listener(changes)` after every mutation, under the store lock (keep it non-blocking)."""
        self._listeners.append(listener)

    @contextmanager
    def silenced(self) -> Iterator[None]:
        """Mutations inside emit no changes (seeding: HubSpot sends no webhooks for pre-existing data)."""
        with self._lock:
            self._silent += 1
            try:
                yield
            finally:
                self._silent -= 1

    def _emit(self, changes: list[Change]) -> None:
        if changes and not self._silent:
            for listener in self._listeners:
                listener(changes)

    def _resolve(self, object_type: str, raw: str | int, id_property: str | None = None) -> int | None:
        text = str(raw).strip()
        if id_property in (None, "", "hs_object_id"):
            if not text.isdigit():
                return None
            oid = int(text)
            return self._merged.get((object_type, oid), oid)
        if object_type == "contacts" and id_property == "email":
            return self._emails.get(text.lower())
        for rec in self._records[object_type].values():
            if not rec.archived and rec.properties.get(id_property) == text:
                return rec.id
        return None

    def _live(
        self, object_type: str, raw: str | int, id_property: str | None = None, archived: bool = False
    ) -> Record | None:
        oid = self._resolve(object_type, raw, id_property)
        rec = self._records[object_type].get(oid) if oid is not None else None
        if rec is None or rec.archived != archived:
            return None
        return rec

    # ---- reads -------------------------------------------------------------------------------
    def get(
        self, object_type: str, raw: str | int, *, id_property: str | None = None, archived: bool = False
    ) -> Record | None:
        with self._lock:
            rec = self._live(object_type, raw, id_property, archived)
            return _snap(rec) if rec else None

    def page(
        self, object_type: str, after: int | None, limit: int, archived: bool = False
    ) -> tuple[list[Record], int | None]:
        """Records ordered by id from `after` (inclusive); returns (page, next cursor or None)."""
        with self._lock:
            ids = sorted(
                i
                for i, r in self._records[object_type].items()
                if r.archived == archived and (after is None or i >= after)
            )
            chosen = [_snap(self._records[object_type][i]) for i in ids[:limit]]
            return chosen, (ids[limit] if len(ids) > limit else None)

    def scan(self, object_type: str) -> list[Record]:
        """Every live record ordered by id, without history (search and dumps need none)."""
        with self._lock:
            return [
                Record(r.object_type, r.id, dict(r.properties), {}, r.created_ms, r.updated_ms)
                for _, r in sorted(self._records[object_type].items())
                if not r.archived
            ]

    def count(self, object_type: str) -> int:
        with self._lock:
            return sum(1 for r in self._records[object_type].values() if not r.archived)

    # ---- object writes ---------------------------------------------------------------------------
    def create(
        self,
        object_type: str,
        values: Mapping[str, Any],
        actor: Actor,
        *,
        associations: Sequence[AssocInput] = (),
        allow_read_only: bool = False,
        at_ms: int | None = None,
    ) -> Record:
        """Create one object (with inline associations); 400/409 before anything changes."""
        return self.create_many(
            object_type, [(values, associations)], actor, allow_read_only=allow_read_only, at_ms=at_ms
        )[0]

    def create_many(
        self,
        object_type: str,
        inputs: Sequence[tuple[Mapping[str, Any], Sequence[AssocInput]]],
        actor: Actor,
        *,
        allow_read_only: bool = False,
        at_ms: int | None = None,
    ) -> list[Record]:
        """All-or-nothing batch create, as HubSpot's batch/create answers 400/409 for the whole batch."""
        normalized = [
            self.schema.normalize_values(object_type, v, allow_read_only=allow_read_only) for v, _ in inputs
        ]
        with self._lock:
            seen: dict[str, int] = {}
            for values, (_, assocs) in zip(normalized, inputs, strict=True):
                self._check_required(object_type, values)
                self._check_unique(object_type, values, None, seen)
                self._check_associations(object_type, assocs)
            ts = at_ms if at_ms is not None else self._clock()
            changes: list[Change] = []
            created = []
            for values, (_, assocs) in zip(normalized, inputs, strict=True):
                rec = self._new_record(object_type, values, actor, ts, changes)
                for to_id, type_id in assocs:
                    self._link(object_type, rec.id, to_id, type_id, actor, ts, changes)
                created.append(_snap(rec))
            self._emit(changes)
            return created

    def _new_record(
        self, object_type: str, values: dict[str, str], actor: Actor, ts: int, changes: list[Change]
    ) -> Record:
        ot = OBJECT_TYPES[object_type]
        oid, self._next_id = self._next_id, self._next_id + 1
        rec = Record(object_type, oid, {}, {}, ts, ts)
        self._records[object_type][oid] = rec
        changes.append(Change(object_type, "creation", oid, ts, actor))
        system = {
            "hs_object_id": str(oid),
            ot.created_prop: iso_from_ms(ts),
            ot.modified_prop: iso_from_ms(ts),
        }
        for name, value in system.items():
            self._set(rec, name, value, actor, ts)
        self._apply(rec, values, actor, ts, changes, creating=True)
        return rec

    def update(
        self,
        object_type: str,
        raw_id: str | int,
        values: Mapping[str, Any],
        actor: Actor,
        *,
        id_property: str | None = None,
        allow_read_only: bool = False,
        at_ms: int | None = None,
    ) -> Record:
        """PATCH one object; 404 when it does not exist."""
        records, missing = self.update_many(
            object_type,
            [(raw_id, values)],
            actor,
            id_property=id_property,
            allow_read_only=allow_read_only,
            at_ms=at_ms,
        )
        if missing:
            raise not_found(str(raw_id))
        return records[0]

    def update_many(
        self,
        object_type: str,
        inputs: Sequence[tuple[str | int, Mapping[str, Any]]],
        actor: Actor,
        *,
        id_property: str | None = None,
        allow_read_only: bool = False,
        at_ms: int | None = None,
    ) -> tuple[list[Record], list[str]]:
        """Update what exists; returns (updated snapshots, ids not found). Invalid values → 400 for all."""
        normalized = [
            self.schema.normalize_values(object_type, v, allow_read_only=allow_read_only) for _, v in inputs
        ]
        with self._lock:
            targets: list[tuple[Record, dict[str, str]]] = []
            missing: list[str] = []
            for (raw_id, _), values in zip(inputs, normalized, strict=True):
                rec = self._live(object_type, raw_id, id_property)
                if rec is None:
                    missing.append(str(raw_id))
                    continue
                self._check_unique(object_type, values, rec.id, {})
                targets.append((rec, values))
            ts = at_ms if at_ms is not None else self._clock()
            changes: list[Change] = []
            for rec, values in targets:
                self._apply(rec, values, actor, ts, changes)
            self._emit(changes)
            return [_snap(rec) for rec, _ in targets], missing

    def upsert_many(
        self, object_type: str, inputs: Sequence[tuple[str, str | None, Mapping[str, Any]]], actor: Actor
    ) -> tuple[list[tuple[Record, bool]], list[str]]:
        """Create-or-update by a unique idProperty; returns ([(record, is_new)], ids not creatable)."""
        results: list[tuple[Record, bool]] = []
        missing: list[str] = []
        with self._lock:
            for raw_id, id_property, values in inputs:
                if self._live(object_type, raw_id, id_property) is not None:
                    results.append(
                        (self.update(object_type, raw_id, values, actor, id_property=id_property), False)
                    )
                elif id_property in (None, "", "hs_object_id"):
                    missing.append(str(raw_id))  # an object id that does not exist cannot be created
                else:
                    merged = {**values, id_property: raw_id}
                    results.append((self.create(object_type, merged, actor), True))
        return results, missing

    def archive(self, object_type: str, raw_id: str | int, actor: Actor) -> bool:
        """Move to the recycle bin; False when there was nothing to archive (HubSpot still answers 204)."""
        with self._lock:
            rec = self._live(object_type, raw_id)
            if rec is None:
                return False
            ts = self._clock()
            rec.archived, rec.archived_ms = True, ts
            if object_type == "contacts" and rec.properties.get("email"):
                self._emails.pop(rec.properties["email"], None)
            self._emit([Change(object_type, "deletion", rec.id, ts, actor, extra={"changeFlag": "DELETED"})])
            return True

    def purge(self, object_type: str, raw_id: str, actor: Actor, id_property: str | None = None) -> bool:
        """GDPR delete: gone for good; emits privacyDeletion and deletion."""
        with self._lock:
            rec = self._live(object_type, raw_id, id_property)
            if rec is None:
                return False
            ts = self._clock()
            del self._records[object_type][rec.id]
            self._emails.pop(rec.properties.get("email", ""), None)
            self._graph.drop_node(object_type, rec.id)
            self._emit(
                [
                    Change(object_type, "privacyDeletion", rec.id, ts, actor),
                    Change(object_type, "deletion", rec.id, ts, actor, extra={"changeFlag": "DELETED"}),
                ]
            )
            return True

    def merge(self, object_type: str, primary_raw: str, secondary_raw: str, actor: Actor) -> Record:
        """Merge `secondary` into `primary`: blank properties filled, associations moved, id redirected."""
        with self._lock:
            primary, secondary = self._live(object_type, primary_raw), self._live(object_type, secondary_raw)
            if primary is None or secondary is None:
                raise not_found(str(primary_raw if primary is None else secondary_raw))
            if primary.id == secondary.id:
                raise validation("Cannot merge an object with itself.")
            ts = self._clock()
            changes: list[Change] = []
            moved = {
                k: v
                for k, v in secondary.properties.items()
                if v and not primary.properties.get(k) and k not in SYSTEM_PROPS and k != "email"
            }
            self._apply(primary, moved, actor, ts, changes)
            merged_ids = [x for x in primary.properties.get("hs_merged_object_ids", "").split(";") if x]
            self._set(primary, "hs_merged_object_ids", ";".join([*merged_ids, str(secondary.id)]), actor, ts)
            for to_type, to_id, type_ids in self._graph.neighbours(object_type, secondary.id):
                for type_id in type_ids:
                    self._graph.remove(object_type, secondary.id, to_type, to_id, type_id)
                    if (to_type, to_id) != (object_type, primary.id):
                        self._graph.add(object_type, primary.id, to_type, to_id, type_id)
            secondary.archived, secondary.archived_ms = True, ts
            self._merged[(object_type, secondary.id)] = primary.id
            if secondary.properties.get("email"):
                self._emails[secondary.properties["email"]] = primary.id
            changes.insert(
                0,
                Change(
                    object_type,
                    "merge",
                    primary.id,
                    ts,
                    actor,
                    extra={
                        "changeFlag": "MERGED",
                        "primaryObjectId": primary.id,
                        "mergedObjectIds": [secondary.id],
                        "newObjectId": primary.id,
                        "numberOfPropertiesMoved": len(moved),
                    },
                ),
            )
            self._emit(changes)
            return _snap(primary)

    # ---- helpers ---------------------------------------------------------------------------------------
    def _check_required(self, object_type: str, values: Mapping[str, str]) -> None:
        if object_type in _REQUIRES_TIMESTAMP and not values.get("hs_timestamp"):
            raise property_errors(
                [
                    {
                        "name": "hs_timestamp",
                        "error": "REQUIRED_PROPERTY",
                        "message": "hs_timestamp is required",
                    }
                ]
            )

    def _check_unique(
        self, object_type: str, values: Mapping[str, str], own_id: int | None, seen: dict[str, int]
    ) -> None:
        email = values.get("email") if object_type == "contacts" else None
        if email:
            existing = self._emails.get(email, seen.get(email))
            if existing is not None and existing != own_id:
                raise conflict(f"Contact already exists. Existing ID: {existing}")
            seen[email] = -1 if own_id is None else own_id

    def _apply(
        self,
        rec: Record,
        values: Mapping[str, str],
        actor: Actor,
        ts: int,
        changes: list[Change],
        *,
        creating: bool = False,
    ) -> None:
        changed = False
        for name, value in values.items():
            old = rec.properties.get(name)
            if old == value or (old is None and value == ""):
                continue  # HubSpot records no history and sends no webhook for a no-op write
            if name == "lifecyclestage" and old and value and self._is_backward(rec.object_type, old, value):
                continue  # forward only unless cleared first (hubspot-facts §8); assumed silently ignored
            self._set(rec, name, value, actor, ts)
            changed = True
            if name not in SYSTEM_PROPS:
                changes.append(Change(rec.object_type, "propertyChange", rec.id, ts, actor, name, value))
        if changed and not creating:
            rec.updated_ms = ts
            self._set(rec, OBJECT_TYPES[rec.object_type].modified_prop, iso_from_ms(ts), actor, ts)

    def _is_backward(self, object_type: str, old: str, new: str) -> bool:
        old_rank = self.schema.option_rank(object_type, "lifecyclestage", old)
        new_rank = self.schema.option_rank(object_type, "lifecyclestage", new)
        return old_rank is not None and new_rank is not None and new_rank < old_rank

    def _set(self, rec: Record, name: str, value: str, actor: Actor, ts: int) -> None:
        if rec.object_type == "contacts" and name == "email":
            self._emails.pop(rec.properties.get("email", ""), None)
            if value:
                self._emails[value] = rec.id
        rec.properties[name] = value
        rec.history.setdefault(name, []).append(
            HistoryEntry(value, ts, actor.source_type, actor.source_id, actor.user_id)
        )
