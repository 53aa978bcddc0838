"""Association operations of the Store (a mixin: it shares the Store's lock, records and graph)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from .errors import not_found, validation
from .graph import AssociationGraph
from .model import Actor, Change, Record
from .objecttypes import OBJECT_TYPES, assoc_type, assoc_types_between, association_enum, default_type_id

__all__ = ["AssociationOps", "AssocInput"]

AssocInput = tuple[int, int]  # (to_id, association type id)


class AssociationOps:
    """Typed associations between records; every method takes the Store's lock and emits changes."""

    _lock: threading.RLock
    _records: dict[str, dict[int, Record]]
    _graph: AssociationGraph
    _clock: Callable[[], int]

    def _emit(self, changes: list[Change]) -> None:
        raise NotImplementedError

    def associations(self, object_type: str, object_id: int, to_type: str) -> dict[int, set[int]]:
        """to_id -> association type ids, leaving out archived targets."""
        with self._lock:
            targets = self._graph.targets(object_type, object_id, to_type)
            live = self._records[to_type]
            return {i: t for i, t in targets.items() if i in live and not live[i].archived}

    def associate(
        self, from_type: str, from_id: int, to_type: str, to_id: int, type_ids: Sequence[int], actor: Actor
    ) -> None:
        """Add typed associations (both directions); 400 for an unknown type, 404 for a missing object."""
        with self._lock:
            self._require(from_type, from_id)
            self._require(to_type, to_id)
            for type_id in type_ids:
                found = assoc_type(from_type, type_id)
                if found is None or found.to_type != to_type:
                    raise validation(
                        f"{type_id} is not a valid association type id from {from_type} to {to_type}."
                    )
            ts, changes = self._clock(), list[Change]()
            for type_id in type_ids:
                self._link(from_type, from_id, to_id, type_id, actor, ts, changes)
            self._emit(changes)

    def associate_default(self, from_type: str, from_id: int, to_type: str, to_id: int, actor: Actor) -> int:
        """Add the unlabeled default; a contact/deal without a primary company also gets the primary."""
        type_id = default_type_id(from_type, to_type)
        if type_id is None:
            raise validation(f"There is no default association type from {from_type} to {to_type}.")
        wanted = [type_id]
        primary = next(
            (
                a.type_id
                for a in assoc_types_between(from_type, to_type)
                if a.is_primary and from_type in ("contacts", "deals")
            ),
            None,
        )
        with self._lock:
            if primary is not None and not any(
                primary in t for t in self.associations(from_type, from_id, to_type).values()
            ):
                wanted.append(primary)
            self.associate(from_type, from_id, to_type, to_id, wanted, actor)
        return type_id

    def disassociate(
        self,
        from_type: str,
        from_id: int,
        to_type: str,
        to_id: int,
        actor: Actor,
        type_ids: Sequence[int] | None = None,
    ) -> None:
        """Remove the given types (all types between the pair when None)."""
        with self._lock:
            existing = self._graph.types(from_type, from_id, to_type, to_id)
            ts, changes = self._clock(), list[Change]()
            for type_id in sorted(existing if type_ids is None else set(type_ids) & existing):
                if self._graph.remove(from_type, from_id, to_type, to_id, type_id):
                    self._assoc_changes(from_type, from_id, to_type, to_id, type_id, True, actor, ts, changes)
            self._emit(changes)

    def _link(
        self,
        from_type: str,
        from_id: int,
        to_id: int,
        type_id: int,
        actor: Actor,
        ts: int,
        changes: list[Change],
    ) -> None:
        found = assoc_type(from_type, type_id)
        assert found is not None
        if found.is_primary and found.from_type == "companies":  # keep "one primary" on the owning side
            self._link(found.to_type, to_id, from_id, found.reverse_id, actor, ts, changes)
            return
        to_type = found.to_type
        if not self._graph.add(from_type, from_id, to_type, to_id, type_id):
            return
        if found.is_primary:
            for other_id, types in self._graph.targets(from_type, from_id, to_type).items():
                if other_id != to_id and type_id in types:
                    self._graph.remove(from_type, from_id, to_type, other_id, type_id)
                    self._assoc_changes(
                        from_type, from_id, to_type, other_id, type_id, True, actor, ts, changes
                    )
            unlabeled = default_type_id(from_type, to_type)
            if unlabeled is not None:
                self._link(from_type, from_id, to_id, unlabeled, actor, ts, changes)
        self._assoc_changes(from_type, from_id, to_type, to_id, type_id, False, actor, ts, changes)

    def _assoc_changes(
        self,
        from_type: str,
        from_id: int,
        to_type: str,
        to_id: int,
        type_id: int,
        removed: bool,
        actor: Actor,
        ts: int,
        changes: list[Change],
    ) -> None:
        found = assoc_type(from_type, type_id)
        primary = bool(found and found.is_primary)
        for a_type, a_id, b_type, b_id in (
            (from_type, from_id, to_type, to_id),
            (to_type, to_id, from_type, from_id),
        ):
            enum = association_enum(a_type, b_type)
            if enum:
                changes.append(
                    Change(
                        a_type,
                        "associationChange",
                        a_id,
                        ts,
                        actor,
                        extra={
                            "associationType": enum,
                            "fromObjectId": a_id,
                            "toObjectId": b_id,
                            "associationRemoved": removed,
                            "isPrimaryAssociation": primary,
                        },
                    )
                )

    def _require(self, object_type: str, object_id: int) -> Record:
        rec = self._records[object_type].get(object_id)
        if rec is None or rec.archived:
            raise not_found(str(object_id))
        return rec

    def _check_associations(self, object_type: str, assocs: Sequence[AssocInput]) -> None:
        for to_id, type_id in assocs:
            found = assoc_type(object_type, type_id)
            if found is None:
                raise validation(f"{type_id} is not a valid association type id from {object_type}.")
            target = self._records[found.to_type].get(to_id)
            if target is None or target.archived:
                raise validation(
                    f"Object with ID {to_id} of type {OBJECT_TYPES[found.to_type].type_id} does "
                    "not exist. Please check the association inputs."
                )
