"""The association graph: typed, directed edges stored in both directions. Not thread-safe on its own;
the Store guards it with its lock."""

from __future__ import annotations

from .objecttypes import reverse_type_id

__all__ = ["AssociationGraph"]

Node = tuple[str, int]


class AssociationGraph:
    """Edges keyed by (from_type, from_id) -> to_type -> to_id -> {association type ids}."""

    def __init__(self) -> None:
        self._edges: dict[Node, dict[str, dict[int, set[int]]]] = {}

    def types(self, from_type: str, from_id: int, to_type: str, to_id: int) -> set[int]:
        return set(self._edges.get((from_type, from_id), {}).get(to_type, {}).get(to_id, set()))

    def targets(self, from_type: str, from_id: int, to_type: str) -> dict[int, set[int]]:
        """to_id -> type ids, ordered by to_id."""
        found = self._edges.get((from_type, from_id), {}).get(to_type, {})
        return {to_id: set(found[to_id]) for to_id in sorted(found) if found[to_id]}

    def add(self, from_type: str, from_id: int, to_type: str, to_id: int, type_id: int) -> bool:
        """Add the edge and its reverse; False when it already existed."""
        forward = (
            self._edges.setdefault((from_type, from_id), {}).setdefault(to_type, {}).setdefault(to_id, set())
        )
        if type_id in forward:
            return False
        forward.add(type_id)
        backward = (
            self._edges.setdefault((to_type, to_id), {}).setdefault(from_type, {}).setdefault(from_id, set())
        )
        backward.add(reverse_type_id(from_type, type_id))
        return True

    def remove(self, from_type: str, from_id: int, to_type: str, to_id: int, type_id: int) -> bool:
        """Remove the edge and its reverse; False when it did not exist."""
        forward = self._edges.get((from_type, from_id), {}).get(to_type, {}).get(to_id)
        if not forward or type_id not in forward:
            return False
        forward.discard(type_id)
        backward = self._edges.get((to_type, to_id), {}).get(from_type, {}).get(from_id)
        if backward is not None:
            backward.discard(reverse_type_id(from_type, type_id))
        return True

    def neighbours(self, from_type: str, from_id: int) -> list[tuple[str, int, set[int]]]:
        """Every (to_type, to_id, type ids) edge leaving a node."""
        out = []
        for to_type, targets in self._edges.get((from_type, from_id), {}).items():
            for to_id, type_ids in targets.items():
                if type_ids:
                    out.append((to_type, to_id, set(type_ids)))
        return out

    def drop_node(self, object_type: str, object_id: int) -> None:
        """Forget a node and every edge touching it (GDPR delete)."""
        for to_type, to_id, type_ids in self.neighbours(object_type, object_id):
            for type_id in type_ids:
                self.remove(object_type, object_id, to_type, to_id, type_id)
        self._edges.pop((object_type, object_id), None)
