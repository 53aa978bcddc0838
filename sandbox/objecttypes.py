"""CRM object types the sandbox serves and HubSpot's default association types between them."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ObjectType",
    "OBJECT_TYPES",
    "resolve_type",
    "AssocType",
    "assoc_type",
    "assoc_types_between",
    "reverse_type_id",
    "default_type_id",
    "association_enum",
]


@dataclass(frozen=True)
class ObjectType:
    """`name` is the v3 path segment (contacts); `singular` the webhook prefix (contact)."""

    name: str
    singular: str
    type_id: str
    upper: str  # "CONTACT", used in error messages and associationType enums
    default_properties: tuple[str, ...]
    created_prop: str
    modified_prop: str


OBJECT_TYPES: dict[str, ObjectType] = {
    t.name: t
    for t in (
        ObjectType(
            "contacts",
            "contact",
            "0-1",
            "CONTACT",
            ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"),
            "createdate",
            "lastmodifieddate",
        ),
        ObjectType(
            "companies",
            "company",
            "0-2",
            "COMPANY",
            ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
            "createdate",
            "hs_lastmodifieddate",
        ),
        ObjectType(
            "deals",
            "deal",
            "0-3",
            "DEAL",
            (
                "amount",
                "closedate",
                "createdate",
                "dealname",
                "dealstage",
                "hs_lastmodifieddate",
                "hs_object_id",
                "pipeline",
            ),
            "createdate",
            "hs_lastmodifieddate",
        ),
        ObjectType(
            "tasks",
            "task",
            "0-27",
            "TASK",
            ("hs_createdate", "hs_lastmodifieddate", "hs_object_id"),
            "hs_createdate",
            "hs_lastmodifieddate",
        ),
        ObjectType(
            "notes",
            "note",
            "0-46",
            "NOTE",
            ("hs_createdate", "hs_lastmodifieddate", "hs_object_id"),
            "hs_createdate",
            "hs_lastmodifieddate",
        ),
    )
}

_ALIASES: dict[str, str] = {}
for _t in OBJECT_TYPES.values():
    for _alias in (_t.name, _t.singular, _t.type_id, _t.upper.lower()):
        _ALIASES[_alias] = _t.name


def resolve_type(name: str) -> ObjectType | None:
    """Accept every spelling HubSpot accepts in paths: contacts, contact, 0-1, CONTACTS."""
    key = (name or "").strip().lower()
    canonical = _ALIASES.get(key)
    return OBJECT_TYPES[canonical] if canonical else None


@dataclass(frozen=True)
class AssocType:
    """A HUBSPOT_DEFINED association type from `from_type` to `to_type`."""

    from_type: str
    to_type: str
    type_id: int
    reverse_id: int
    label: str | None = None  # "Primary" for the primary company types

    @property
    def is_primary(self) -> bool:
        return self.label == "Primary"


def _pair(a: str, b: str, ab: int, ba: int, label: str | None = None) -> tuple[AssocType, AssocType]:
    return AssocType(a, b, ab, ba, label), AssocType(b, a, ba, ab, label)


# hubspot-facts.md §4 (SDK hubspot/crm/association_type.py).
_TYPES: tuple[AssocType, ...] = (
    *_pair("contacts", "companies", 279, 280),
    *_pair("contacts", "companies", 1, 2, "Primary"),
    *_pair("contacts", "deals", 4, 3),
    *_pair("deals", "companies", 341, 342),
    *_pair("deals", "companies", 5, 6, "Primary"),
    *_pair("tasks", "contacts", 204, 203),
    *_pair("notes", "contacts", 202, 201),
    *_pair("tasks", "companies", 192, 191),
    *_pair("notes", "companies", 190, 189),
    *_pair("tasks", "deals", 216, 215),
    *_pair("notes", "deals", 214, 213),
    AssocType("contacts", "contacts", 449, 449),
    AssocType("companies", "companies", 450, 450),
    AssocType("deals", "deals", 451, 451),
)
_BY_KEY: dict[tuple[str, int], AssocType] = {(t.from_type, t.type_id): t for t in _TYPES}


def assoc_type(from_type: str, type_id: int) -> AssocType | None:
    return _BY_KEY.get((from_type, type_id))


def assoc_types_between(from_type: str, to_type: str) -> list[AssocType]:
    return [t for t in _TYPES if t.from_type == from_type and t.to_type == to_type]


def reverse_type_id(from_type: str, type_id: int) -> int:
    found = _BY_KEY.get((from_type, type_id))
    return found.reverse_id if found else type_id


def default_type_id(from_type: str, to_type: str) -> int | None:
    """The unlabeled (default) type between two object types, e.g. contacts→companies 279."""
    for t in assoc_types_between(from_type, to_type):
        if t.label is None:
            return t.type_id
    return None


_ENUMERABLE = {"contacts", "companies", "deals"}


def association_enum(from_type: str, to_type: str) -> str | None:
    """The webhook associationType (CONTACT_TO_COMPANY); None for pairs HubSpot sends no events for."""
    if from_type not in _ENUMERABLE or to_type not in _ENUMERABLE:
        return None
    return f"{OBJECT_TYPES[from_type].upper}_TO_{OBJECT_TYPES[to_type].upper}"
