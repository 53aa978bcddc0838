"""Property definitions and groups per object type, and HubSpot's validation of property values.

Definitions are kept as dicts in the SDK's ModelProperty / PropertyGroup JSON shape so the properties
API can serve them as they are. `normalize_values` is what every object write goes through.
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

from .errors import HubSpotError, error_body, property_errors, validation
from .timeutil import date_from_ms, iso_from_ms, now_ms, to_ms

__all__ = ["PropertySchema", "FIELD_TYPES"]

# Type -> allowed fieldTypes ([PROPS] in hubspot-facts.md §6).
FIELD_TYPES: dict[str, set[str]] = {
    "bool": {"booleancheckbox", "calculation_equation"},
    "enumeration": {"booleancheckbox", "checkbox", "radio", "select", "calculation_equation"},
    "date": {"date"},
    "datetime": {"date"},
    "string": {"text", "textarea", "file", "html", "phonenumber", "calculation_equation"},
    "number": {"number", "calculation_equation"},
}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_MAX_STRING = 65_536


def _option(raw: Mapping[str, Any], index: int) -> dict[str, Any]:
    missing = [k for k in ("label", "value") if raw.get(k) in (None, "")]
    if missing:
        raise validation(f"Some required fields were not set: [{', '.join(missing)}] in options[{index}]")
    return {
        "label": str(raw["label"]),
        "value": str(raw["value"]),
        "description": raw.get("description") or "",
        "displayOrder": int(raw.get("displayOrder", index)),
        "hidden": bool(raw.get("hidden", False)),
    }


class PropertySchema:
    """Thread-safe registry of property definitions and groups for each object type."""

    def __init__(self, object_types: list[str], clock: Callable[[], int] = now_ms) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self._props: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in object_types}
        self._groups: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in object_types}

    # ---- groups -----------------------------------------------------------------------------
    def create_group(self, object_type: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a group (name and label required); 409 when the name is taken."""
        missing = [k for k in ("name", "label") if not body.get(k)]
        if missing:
            raise validation(f"Some required fields were not set: [{', '.join(missing)}]")
        name = str(body["name"])
        with self._lock:
            groups = self._groups[object_type]
            if name in groups:
                raise HubSpotError(
                    409,
                    error_body(f"A property group named '{name}' already exists.", "OBJECT_ALREADY_EXISTS"),
                )
            group = {
                "name": name,
                "label": str(body["label"]),
                "displayOrder": int(body.get("displayOrder", -1)),
                "archived": False,
            }
            groups[name] = group
            return dict(group)

    def get_group(self, object_type: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            group = self._groups[object_type].get(name)
            return dict(group) if group else None

    def groups(self, object_type: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(g) for g in self._groups[object_type].values()]

    def update_group(self, object_type: str, name: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            group = self._groups[object_type].get(name)
            if group is None:
                return None
            if body.get("label"):
                group["label"] = str(body["label"])
            if body.get("displayOrder") is not None:
                group["displayOrder"] = int(body["displayOrder"])
            return dict(group)

    def archive_group(self, object_type: str, name: str) -> bool:
        with self._lock:
            return self._groups[object_type].pop(name, None) is not None

    # ---- properties -------------------------------------------------------------------------
    def create(
        self,
        object_type: str,
        body: Mapping[str, Any],
        *,
        hubspot_defined: bool = False,
        read_only_value: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create a property as POST /crm/v3/properties/{objectType} does; raises HubSpotError."""
        missing = [k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)]
        if missing:
            raise validation(f"Some required fields were not set: [{', '.join(missing)}]")
        name, ptype, field_type = str(body["name"]), str(body["type"]), str(body["fieldType"])
        if not _NAME_RE.match(name):
            raise validation(
                f"Property name '{name}' must start with a lowercase letter and contain only "
                "lowercase letters, numbers and underscores."
            )
        self._check_types(ptype, field_type)
        now = self._clock()
        with self._lock:
            if name in self._props[object_type]:
                raise HubSpotError(
                    409, error_body(f"Property named '{name}' already exists.", "OBJECT_ALREADY_EXISTS")
                )
            if body["groupName"] not in self._groups[object_type]:
                raise validation(f"property group {body['groupName']} does not exist.")
            prop: dict[str, Any] = {
                "updatedAt": iso_from_ms(now),
                "createdAt": iso_from_ms(now),
                "name": name,
                "label": str(body["label"]),
                "type": ptype,
                "fieldType": field_type,
                "description": str(body.get("description") or ""),
                "groupName": str(body["groupName"]),
                "options": [_option(o, i) for i, o in enumerate(body.get("options") or [])],
                "displayOrder": int(body.get("displayOrder", -1)),
                "calculated": field_type == "calculation_equation",
                "externalOptions": bool(body.get("externalOptions", False)),
                "hasUniqueValue": bool(body.get("hasUniqueValue", False)),
                "hidden": bool(body.get("hidden", False)),
                "hubspotDefined": hubspot_defined,
                "modificationMetadata": {
                    "archivable": not hubspot_defined,
                    "readOnlyDefinition": hubspot_defined,
                    "readOnlyValue": read_only_value,
                },
                "formField": bool(body.get("formField", False)),
                "dataSensitivity": "non_sensitive",
                "archived": False,
            }
            for key in ("referencedObjectType", "calculationFormula"):
                if body.get(key):
                    prop[key] = body[key]
            prop.update(extra or {})
            self._props[object_type][name] = prop
            return copy.deepcopy(prop)

    def _check_types(self, ptype: str, field_type: str) -> None:
        if ptype not in FIELD_TYPES:
            raise validation(f"Invalid type {ptype!r}; expected one of {sorted(FIELD_TYPES)}")
        if field_type not in FIELD_TYPES[ptype]:
            raise validation(
                f"fieldType {field_type!r} is not valid for a property of type {ptype!r}; "
                f"expected one of {sorted(FIELD_TYPES[ptype])}"
            )

    def get(self, object_type: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            prop = self._props[object_type].get(name)
            return copy.deepcopy(prop) if prop else None

    def all(self, object_type: str) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(p) for p in self._props[object_type].values()]

    def names(self, object_type: str) -> set[str]:
        with self._lock:
            return set(self._props[object_type])

    def update(self, object_type: str, name: str, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """PATCH a property: label, description, groupName, options (replaced), displayOrder, hidden..."""
        with self._lock:
            prop = self._props[object_type].get(name)
            if prop is None:
                return None
            ptype = str(body.get("type") or prop["type"])
            field_type = str(body.get("fieldType") or prop["fieldType"])
            self._check_types(ptype, field_type)
            if body.get("groupName") and body["groupName"] not in self._groups[object_type]:
                raise validation(f"property group {body['groupName']} does not exist.")
            for key in ("label", "description", "groupName", "calculationFormula"):
                if body.get(key) is not None:
                    prop[key] = body[key]
            for key in ("displayOrder",):
                if body.get(key) is not None:
                    prop[key] = int(body[key])
            for key in ("hidden", "formField"):
                if body.get(key) is not None:
                    prop[key] = bool(body[key])
            if body.get("options") is not None:
                prop["options"] = [_option(o, i) for i, o in enumerate(body["options"])]
            prop["type"], prop["fieldType"] = ptype, field_type
            prop["updatedAt"] = iso_from_ms(self._clock())
            return copy.deepcopy(prop)

    def set_options(self, object_type: str, name: str, options: list[dict[str, Any]]) -> None:
        """Replace options without API validation (owners, pipeline stages kept in sync by the portal)."""
        with self._lock:
            self._props[object_type][name]["options"] = [_option(o, i) for i, o in enumerate(options)]

    def archive(self, object_type: str, name: str) -> bool:
        with self._lock:
            prop = self._props[object_type].get(name)
            if prop is None:
                return False
            if prop["hubspotDefined"]:
                raise validation(f"Property {name} is a HubSpot default property and can't be archived.")
            del self._props[object_type][name]
            return True

    # ---- values -----------------------------------------------------------------------------
    def normalize_values(
        self, object_type: str, values: Mapping[str, Any], *, allow_read_only: bool = False
    ) -> dict[str, str]:
        """Return `values` as HubSpot stores them (all strings); 400 listing every invalid one."""
        errors: list[dict[str, str]] = []
        normalized: dict[str, str] = {}
        with self._lock:
            defs = self._props[object_type]
            for name, raw in values.items():
                prop = defs.get(name)
                if prop is None:
                    errors.append(
                        {
                            "name": name,
                            "error": "PROPERTY_DOESNT_EXIST",
                            "message": f'Property "{name}" does not exist',
                        }
                    )
                    continue
                if prop["modificationMetadata"]["readOnlyValue"] and not allow_read_only:
                    errors.append(
                        {
                            "name": name,
                            "error": "READ_ONLY_VALUE",
                            "message": f'"{name}" is a read only property; its value cannot be set.',
                        }
                    )
                    continue
                try:
                    normalized[name] = _normalize_value(object_type, prop, raw)
                except ValueError as exc:
                    code, message = exc.args
                    errors.append({"name": name, "error": code, "message": message})
        if errors:
            raise property_errors(errors)
        return normalized

    def value_kind(self, object_type: str, name: str) -> str:
        """'number', 'datetime' (date and datetime), 'bool' or 'string' — how search compares it."""
        with self._lock:
            prop = self._props[object_type].get(name)
        if prop is None:
            return "string"
        if prop["type"] in ("date", "datetime"):
            return "datetime"
        return str(prop["type"]) if prop["type"] in ("number", "bool") else "string"

    def option_rank(self, object_type: str, name: str, value: str) -> int | None:
        """The option's displayOrder (used for lifecyclestage's forward-only rule)."""
        with self._lock:
            prop = self._props[object_type].get(name)
            for option in (prop or {}).get("options", []):
                if option["value"] == value:
                    return int(option["displayOrder"])
        return None


def _normalize_value(object_type: str, prop: Mapping[str, Any], raw: Any) -> str:
    """One value as stored; raises ValueError(error_code, message)."""
    name = prop["name"]
    if raw is None:
        return ""
    if isinstance(raw, bool):
        value = "true" if raw else "false"
    else:
        value = str(raw)
    if value == "":
        return ""  # clearing a value is always allowed
    ptype = prop["type"]
    if ptype == "number":
        try:
            float(value)
        except ValueError:
            raise ValueError("INVALID_FLOAT", f"{value} is not a valid number for property {name}") from None
        return value.strip()
    if ptype == "bool":
        lowered = value.strip().lower()
        if lowered not in ("true", "false"):
            raise ValueError("INVALID_BOOLEAN", f"{value} is not a valid boolean value for property {name}")
        return lowered
    if ptype in ("date", "datetime"):
        ms = to_ms(value)
        if ms is None:
            raise ValueError(
                "INVALID_DATE",
                f"{value} is not a valid date/datetime for property {name}; "
                "use milliseconds since the epoch or ISO 8601",
            )
        return date_from_ms(ms) if ptype == "date" else iso_from_ms(ms)
    if ptype == "enumeration":
        allowed = [o["value"] for o in prop.get("options", [])]
        chosen = value.split(";") if prop["fieldType"] == "checkbox" else [value]
        bad = [v for v in chosen if v not in allowed]
        if bad:
            listing = ", ".join(f'label: "{o["label"]}"\nvalue: "{o["value"]}"\n' for o in prop["options"])
            raise ValueError("INVALID_OPTION", f"{bad[0]} was not one of the allowed options: [{listing}]")
        return value
    if object_type == "contacts" and name == "email":
        value = value.strip().lower()  # HubSpot stores emails lowercased
        if not _EMAIL_RE.match(value):
            raise ValueError("INVALID_EMAIL", f"Email address {value} is invalid")
    if len(value) > _MAX_STRING:
        raise ValueError("INVALID_STRING", f"Value for {name} is longer than {_MAX_STRING} characters")
    return value
