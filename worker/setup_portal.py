"""`lifecycle setup-portal`: create or update the lifecycle property group and properties.

Idempotent: a second run changes nothing and says so. Options missing in the portal are
added; options the portal has but config no longer names are removed only when no record
uses them (checked with a CRM search), otherwise the command refuses and says which.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import click

from worker.errors import ConfigError, HubSpotError
from worker.settings import Settings, load_settings


@dataclass
class Plan:
    """What setup-portal would do: one readable line per change, plus refusals."""

    changes: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    ops: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)  # (verb, object, name, body)


def _options(pairs: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"label": label, "value": value, "displayOrder": i, "hidden": False}
            for i, (value, label) in enumerate(pairs.items())]


def desired_properties(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """The property definitions config.yaml implies, by object type."""
    p = settings.policy
    c, co = p.contact, p.company
    group = settings.property_group[0]
    statuses = {s.value: s.label for s in p.statuses}
    reasons = {value: f"{label} ({p.milestone_labels.get(m, m)})" for m, opts in p.reasons.items()
               for value, label in opts.items()}

    def enum(name: str, label: str, opts: Mapping[str, str]) -> dict[str, Any]:
        return {"name": name, "label": label, "type": "enumeration", "fieldType": "select", "groupName": group,
                "options": _options(opts)}

    def plain(name: str, label: str, type_: str, field_type: str) -> dict[str, Any]:
        return {"name": name, "label": label, "type": type_, "fieldType": field_type, "groupName": group}

    contact = [
        enum(c.status, "Contact status", statuses),
        enum(c.milestone, "Contact milestone", dict(p.milestone_labels)),
        enum(c.reason, "Milestone reason", reasons),
        plain(c.status_changed_at, "Contact status changed at", "datetime", "date"),
        plain(c.milestone_changed_at, "Contact milestone changed at", "datetime", "date"),
        {**plain(c.lead_gen_suppressed, "Lead generation suppressed", "bool", "booleancheckbox"),
         "options": [{"label": "Yes", "value": "true", "displayOrder": 0, "hidden": False},
                     {"label": "No", "value": "false", "displayOrder": 1, "hidden": False}]},
        enum(c.vertical, "Vertical", {v: v.replace("_", " ").title() for v in settings.verticals}),
        plain(c.gmv_forecast, "GMV forecast", "number", "number"),
    ]
    company = [
        enum(co.account_status, "Account status", statuses),
        plain(co.poc_contact_id, "POC contact id", "string", "text"),
    ]
    return {"contacts": contact, "companies": company}


def plan(settings: Settings, gateway: Any) -> Plan:
    """Compare the portal with config and list what to create, update or refuse."""
    result = Plan()
    name, label = settings.property_group
    for object_type, wanted in desired_properties(settings).items():
        if name not in gateway.get_groups(object_type):
            result.changes.append(f"{object_type}: create property group {name!r}")
            result.ops.append(("create_group", object_type, name, {"name": name, "label": label, "displayOrder": -1}))
        existing = gateway.get_properties(object_type)
        for prop in wanted:
            _plan_property(result, gateway, object_type, prop, existing.get(prop["name"]))
    return result


def _plan_property(result: Plan, gateway: Any, object_type: str, prop: dict[str, Any],
                   current: dict[str, Any] | None) -> None:
    pname = prop["name"]
    if current is None:
        result.changes.append(f"{object_type}: create property {pname!r} ({prop['type']})")
        result.ops.append(("create", object_type, pname, prop))
        return
    if current.get("type") != prop["type"]:
        result.refusals.append(f"{object_type}.{pname}: portal has type {current.get('type')!r}, config wants "
                               f"{prop['type']!r}; change it by hand")
        return
    if "options" not in prop or prop["type"] == "bool":
        return
    have = {o["value"]: o for o in current.get("options") or []}
    want = {o["value"] for o in prop["options"]}
    added = [o["value"] for o in prop["options"] if o["value"] not in have]
    extra = [v for v in have if v not in want]
    kept = []
    for value in extra:
        used = _records_using(gateway, object_type, pname, value)
        if used:
            result.refusals.append(f"{object_type}.{pname}: option {value!r} is not in config but {used} "
                                   f"record(s) use it; left in place")
            kept.append(have[value])
    if added or len(kept) != len(extra):
        options = prop["options"] + [o for o in kept if o["value"] not in want]
        removed = [v for v in extra if v not in {o["value"] for o in kept}]
        what = ", ".join(filter(None, [f"add {added}" if added else "", f"remove {removed}" if removed else ""]))
        result.changes.append(f"{object_type}: update property {pname!r} options: {what}")
        result.ops.append(("update", object_type, pname, {"options": options}))


def _records_using(gateway: Any, object_type: str, prop: str, value: str) -> int:
    answer = gateway.search(object_type, {"filterGroups": [{"filters": [
        {"propertyName": prop, "operator": "EQ", "value": value}]}], "properties": [prop], "limit": 1})
    return int(answer.get("total") or 0)


def apply(plan_: Plan, gateway: Any) -> None:
    for verb, object_type, name, body in plan_.ops:
        if verb == "create_group":
            gateway.create_group(object_type, body)
        elif verb == "create":
            gateway.create_property(object_type, body)
        else:
            gateway.update_property(object_type, name, body)


@click.command("setup-portal")
@click.option("--dry-run", is_flag=True, help="Print what would change; change nothing.")
@click.option("--config", "config", envvar="LIFECYCLE_CONFIG", help="config.yaml to use.")
def setup_portal(dry_run: bool, config: str | None) -> None:
    """Create or update the lifecycle property group and properties in the portal."""
    from worker.deps import make_deps

    try:
        deps = make_deps(load_settings(config))
        result = plan(deps.settings, deps.hubspot)
        if not dry_run:
            apply(result, deps.hubspot)
    except (ConfigError, HubSpotError) as exc:
        click.echo(f"lifecycle setup-portal: {exc}", err=True)
        sys.exit(2 if isinstance(exc, ConfigError) else 1)
    for line in result.changes:
        click.echo(("would " if dry_run else "") + line)
    for line in result.refusals:
        click.echo(f"refused: {line}", err=True)
    if not result.changes:
        click.echo("no changes: the portal already has every lifecycle property")
    sys.exit(1 if result.refusals else 0)
