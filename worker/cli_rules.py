"""The rules' commands: `lifecycle explain`, `lifecycle validate-config`, `lifecycle diagram`.

Thin: parse the arguments, call `rules/`, print. Bad input exits 2 with one line on stderr.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import click

from rules.diagram import mermaid
from rules.errors import TriggerError
from rules.lifecycle import decide
from rules.model import Contact, Decision, Trigger
from rules.policy import Policy
from rules.triggers import parse_contact, parse_trigger
from worker.errors import ConfigError
from worker.settings import Settings, load_settings

CONFIG_HELP = "config file (default: $LIFECYCLE_CONFIG, else the bundled config.yaml)"


def _fail(message: str) -> NoReturn:
    """One line on stderr, exit 2 (usage or input error)."""
    click.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(2)


def _settings(path: str | None) -> Settings:
    try:
        return load_settings(path)
    except ConfigError as exc:
        _fail("; ".join(str(exc).splitlines()))


def _json_arg(option: str, text: str) -> Any:
    """`text` as JSON, or the JSON file it names as `@path`."""
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            _fail(f"{option}: cannot read {text[1:]}: {exc.strerror or exc}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"{option}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")


def _triggers(raw: Any, policy: Policy) -> list[Trigger]:
    """One event, or a list of them (a webhook body as HubSpot posts it)."""
    events = raw if isinstance(raw, list) else [raw]
    if not events:
        _fail("--event: the list of events is empty")
    try:
        return [parse_trigger(event, policy) for event in events]
    except TriggerError as exc:
        _fail(f"--event: {exc}")


def _contact(raw: Any) -> Contact:
    try:
        return parse_contact(raw)
    except TriggerError as exc:
        _fail(f"--contact: {exc}")


@click.command()
@click.option(
    "--contact",
    "contact_arg",
    required=True,
    metavar="CONTACT_JSON",
    help="the contact as HubSpot's API returns it (id, properties, propertiesWithHistory?), or @file",
)
@click.option(
    "--event",
    "event_arg",
    required=True,
    metavar="EVENT_JSON",
    help="a webhook event or email event (or a list of them), or @file",
)
@click.option("--json", "as_json", is_flag=True, help="print the decision as one JSON object")
@click.option("--now", "now_ms", type=int, default=None, metavar="MS", help="evaluation time in ms (default: now)")
@click.option("--config", "config", default=None, metavar="PATH", help=CONFIG_HELP)
def explain(contact_arg: str, event_arg: str, as_json: bool, now_ms: int | None, config: str | None) -> None:
    """Show what the rules decide for CONTACT_JSON after EVENT_JSON; changes nothing."""
    policy = _settings(config).policy
    contact = _contact(_json_arg("--contact", contact_arg))
    triggers = _triggers(_json_arg("--event", event_arg), policy)
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    decision = decide(contact, triggers, policy, now)
    if as_json:
        click.echo(json.dumps(decision_json(decision), indent=2, ensure_ascii=False))
    else:
        click.echo(render(contact, decision, policy))


def decision_json(decision: Decision) -> dict[str, object]:
    """The `explain --json` object: updates, actions, reason, rows (+ needs_history / skip when set)."""
    out = decision.as_json()
    if decision.needs_history:
        out["needs_history"] = True
    if decision.skip:
        out["skip"] = True
    return out


def render(contact: Contact, decision: Decision, policy: Policy) -> str:
    """A decision for a person to read."""
    p = policy.contact
    before = f"{contact.get(p.status) or '(no status)'}/{contact.get(p.milestone) or '(no milestone)'}"
    after = (
        f"{decision.updates.get(p.status) or contact.get(p.status) or '(no status)'}/"
        f"{decision.updates.get(p.milestone) or contact.get(p.milestone) or '(no milestone)'}"
    )
    lines = [
        f"contact {contact.id}: {before}" + (f" → {after}" if after != before else " (unchanged)"),
        f"rows:    {', '.join(decision.rows) or '-'}",
        f"reason:  {decision.reason}",
    ]
    if decision.needs_history:
        lines.append("history: needed: run again with the contact's propertiesWithHistory")
    lines += _render_updates(contact, decision.updates)
    if decision.actions:
        lines.append("actions:")
        for action in decision.actions:
            params = " ".join(f"{k}={v!r}" for k, v in action.params.items() if k != "body")
            lines.append(f"  {action.type}  [{action.key}]" + (f"  {params}" if params else ""))
    if decision.is_noop and not decision.needs_history:
        lines.append("nothing to write, nothing to do")
    return "\n".join(lines)


def _render_updates(contact: Contact, updates: Mapping[str, str]) -> list[str]:
    if not updates:
        return []
    return ["updates:"] + [f"  {name}: {contact.get(name) or '(empty)'} → {value}" for name, value in updates.items()]


@click.command("validate-config")
@click.argument("path", required=False)
def validate_config(path: str | None) -> None:
    """Check config.yaml (or PATH, or $LIFECYCLE_CONFIG); print every problem found."""
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            click.echo(line, err=True)
        sys.exit(2)
    policy = settings.policy
    click.echo(f"config OK: {settings.config_path}")
    click.echo(
        f"{len(policy.statuses)} statuses ({' < '.join(policy.status_values)}), "
        f"{len(policy.milestone_labels)} milestones, {len(policy.manual_transitions)} manual transitions, "
        f"{sum(len(r) for r in policy.reasons.values())} reasons, {len(settings.verticals)} verticals, "
        f"score threshold {policy.score_threshold:g}, app id {policy.app_id}"
    )


@click.command()
@click.option("--config", "config", default=None, metavar="PATH", help=CONFIG_HELP)
def diagram(config: str | None) -> None:
    """Print the lifecycle state machine as a Mermaid stateDiagram-v2, generated from config."""
    click.echo(mermaid(_settings(config).policy), nl=False)
