"""Plain data the store keeps and emits: records, history entries, actors, changes. No I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Actor", "HistoryEntry", "Record", "Change", "INTEGRATION", "CRM_UI", "EMAIL"]

INTEGRATION = "INTEGRATION"
CRM_UI = "CRM_UI"
EMAIL = "EMAIL"


@dataclass(frozen=True)
class Actor:
    """Who made a change, as HubSpot records it in property history and webhook changeSource."""

    source_type: str
    source_id: str | None = None
    user_id: int | None = None


@dataclass(frozen=True)
class HistoryEntry:
    """One property value with when and by whom it was set."""

    value: str
    timestamp_ms: int
    source_type: str
    source_id: str | None = None
    user_id: int | None = None


@dataclass
class Record:
    """A CRM object. `history` lists entries oldest first (the API serves them newest first)."""

    object_type: str
    id: int
    properties: dict[str, str]
    history: dict[str, list[HistoryEntry]]
    created_ms: int
    updated_ms: int
    archived: bool = False
    archived_ms: int | None = None


@dataclass(frozen=True)
class Change:
    """What a webhook subscription can see: creation, propertyChange, deletion, merge, associationChange."""

    object_type: str
    event: str
    object_id: int
    occurred_at: int
    actor: Actor
    property_name: str | None = None
    property_value: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
