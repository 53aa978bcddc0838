"""Records as the SDK's models expect them: SimplePublicObject(WithAssociations), ValueWithTimestamp."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .model import HistoryEntry, Record
from .objecttypes import OBJECT_TYPES, assoc_type, assoc_types_between
from .timeutil import iso_from_ms

__all__ = ["object_json", "history_json", "association_type_name", "split_param"]


def split_param(values: Iterable[str]) -> list[str]:
    """Query lists arrive repeated (SDK: properties=a&properties=b) or comma-joined; accept both."""
    out: list[str] = []
    for value in values:
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return out


def history_json(entry: HistoryEntry) -> dict[str, Any]:
    item: dict[str, Any] = {
        "value": entry.value,
        "timestamp": iso_from_ms(entry.timestamp_ms),
        "sourceType": entry.source_type,
    }
    if entry.source_id is not None:
        item["sourceId"] = entry.source_id
    if entry.user_id is not None:
        item["updatedByUserId"] = entry.user_id
    return item


def object_json(
    rec: Record, known: set[str], properties: list[str] | None = None, with_history: list[str] | None = None
) -> dict[str, Any]:
    """A SimplePublicObject. Requested properties that exist but have no value come back as null;
    unknown ones are left out, as HubSpot does. The id/created/modified properties are always there."""
    ot = OBJECT_TYPES[rec.object_type]
    names = list(properties) if properties else list(ot.default_properties)
    for always in ("hs_object_id", ot.created_prop, ot.modified_prop):
        if always not in names:
            names.append(always)
    props = {n: rec.properties.get(n) for n in sorted(names) if n in known or n in rec.properties}
    body: dict[str, Any] = {
        "id": str(rec.id),
        "properties": props,
        "createdAt": iso_from_ms(rec.created_ms),
        "updatedAt": iso_from_ms(rec.updated_ms),
        "archived": rec.archived,
    }
    if rec.archived and rec.archived_ms is not None:
        body["archivedAt"] = iso_from_ms(rec.archived_ms)
    if with_history:
        body["propertiesWithHistory"] = {
            n: [history_json(e) for e in reversed(rec.history.get(n, []))]
            for n in with_history
            if n in known or n in rec.history
        }
    return body


def association_type_name(from_type: str, type_id: int) -> str:
    """v3 names: contact_to_company (primary), contact_to_company_unlabeled (its unlabeled twin)."""
    found = assoc_type(from_type, type_id)
    if found is None:
        return str(type_id)
    base = f"{OBJECT_TYPES[found.from_type].singular}_to_{OBJECT_TYPES[found.to_type].singular}"
    has_primary = any(t.is_primary for t in assoc_types_between(found.from_type, found.to_type))
    return f"{base}_unlabeled" if has_primary and not found.is_primary else base
