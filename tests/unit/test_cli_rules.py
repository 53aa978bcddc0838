"""`lifecycle explain`, `validate-config` and `diagram` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.factories import (
    CONFIG,
    NOW,
    T0,
    contact_json,
    created_event,
    entry,
    make_email_event,
    make_event,
    prop_event,
)
from worker.cli import main
from worker.cli_rules import diagram, explain, validate_config

OLD = str(T0 - 100_000)


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env={"LIFECYCLE_CONFIG": "", "HUBSPOT_APP_ID": "", **(env or {})})


def explain_json(contact: dict[str, Any], event: Any) -> dict[str, Any]:
    result = invoke(
        "explain", "--contact", json.dumps(contact), "--event", json.dumps(event), "--json", "--now", str(NOW)
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert isinstance(out, dict)
    return out


def ms(value: str) -> dict[str, Any]:
    return prop_event("contact_milestone", value)


def c(status: str | None, milestone: str | None, **props: Any) -> dict[str, Any]:
    return contact_json(contact_status=status, contact_milestone=milestone, **props)


SPEC_ROWS = [
    pytest.param(contact_json(hubspotscore="150"), created_event(), ["T1", "T3"], {"contact_status": "mql"}, id="T1"),
    pytest.param(
        c("prospect", "new"),
        make_email_event("DELIVERED"),
        ["T2"],
        {"contact_milestone": "received_campaigns"},
        id="T2",
    ),
    pytest.param(
        c("prospect", "new", hubspotscore="120"),
        prop_event("hubspotscore", "120"),
        ["T3"],
        {"contact_status": "mql", "contact_milestone": "assigned"},
        id="T3",
    ),
    pytest.param(
        c("mql", "assigned", contact_milestone_changed_at=OLD),
        make_email_event("BOUNCE"),
        ["T4"],
        {"contact_milestone": "dead"},
        id="T4",
    ),
    pytest.param(c("mql", "dead", contact_milestone_changed_at=OLD), ms("dead"), ["T5"], {}, id="T5"),
    pytest.param(c("prospect", "qualified"), ms("qualified"), ["T6"], {"contact_status": "sql"}, id="T6"),
    pytest.param(
        c("sql", "return_to_nurture", milestone_reason="no_budget_now"),
        ms("return_to_nurture"),
        ["T7"],
        {"contact_status": "srl"},
        id="T7",
    ),
    pytest.param(c("sql", "return_to_nurture"), ms("return_to_nurture"), ["T8"], {}, id="T8"),
    pytest.param(
        c("srl", "unqualified", milestone_reason="invalid_email", contact_milestone_changed_at=OLD),
        ms("unqualified"),
        ["T9"],
        {},
        id="T9",
    ),
    pytest.param(c("mql", "in_review", contact_milestone_changed_at=OLD), ms("in_review"), ["T10"], {}, id="T10"),
    pytest.param(
        c("mql", "reassign", vertical="wholesale"),
        ms("reassign"),
        ["T11"],
        {"contact_milestone": "assigned"},
        id="T11",
    ),
    pytest.param(
        c("sql", "contract_negotiations", contact_milestone_changed_at=OLD),
        ms("contract_negotiations"),
        ["T12"],
        {},
        id="T12",
    ),
    pytest.param(
        c("sql", "convert_to_customer"),
        ms("convert_to_customer"),
        ["T13"],
        {"contact_status": "customer", "contact_milestone": "active"},
        id="T13",
    ),
    pytest.param(
        c("customer", "out_of_business", contact_milestone_changed_at=OLD),
        ms("out_of_business"),
        ["T14"],
        {},
        id="T14",
    ),
    pytest.param(
        contact_json(
            contact_status="prospect",
            contact_milestone="working",
            history={"contact_milestone": [entry("working", T0), entry("new", T0 - 9, by="app")]},
        ),
        ms("working"),
        ["T15"],
        {"contact_milestone": "new"},
        id="T15",
    ),
    pytest.param(
        contact_json(
            contact_status="customer",
            contact_milestone="assigned",
            history={"contact_status": [entry("customer", T0), entry("mql", T0 - 9, by="app")]},
        ),
        prop_event("contact_status", "customer"),
        ["T16"],
        {"contact_status": "mql"},
        id="T16",
    ),
    pytest.param(c("prospect", "dead", hubspotscore="150"), prop_event("hubspotscore", "150"), ["T17"], {}, id="T17"),
]


@pytest.mark.parametrize(("contact", "event", "rows", "updates"), SPEC_ROWS)
def test_explain_json_answers_every_spec_row(
    contact: dict[str, Any], event: dict[str, Any], rows: list[str], updates: dict[str, str]
) -> None:
    out = explain_json(contact, event)
    assert list(out) == ["updates", "actions", "reason", "rows"]
    assert out["rows"] == rows and updates.items() <= out["updates"].items()
    assert all(isinstance(v, str) for v in out["updates"].values())
    assert all({"type", "key"} <= set(a) for a in out["actions"])


def test_explain_json_actions_carry_their_params() -> None:
    out = explain_json(c("mql", "reassign", vertical="retail"), ms("reassign"))
    assert out["actions"][0] == {
        "type": "assign_owner",
        "key": f"assign_owner:51:{T0}",
        "mode": "reassign",
        "vertical": "retail",
    }
    assert out["actions"][1]["type"] == "create_task" and out["actions"][1]["kind"] == "new_mql"


def test_explain_json_noop_and_needs_history() -> None:
    noop = explain_json(c("prospect", "new", hubspotscore="99"), prop_event("hubspotscore", "99"))
    assert noop == {
        "updates": {},
        "actions": [],
        "reason": "Nothing to do: score 99 is below the threshold 100.",
        "rows": [],
    }
    needs = explain_json(c("customer", "active"), prop_event("contact_status", "customer"))
    assert needs["needs_history"] is True and needs["updates"] == {}
    gone = explain_json(c("mql", "assigned"), make_event(subscriptionType="contact.deletion"))
    assert gone["skip"] is True


def test_explain_human_output() -> None:
    result = invoke(
        "explain",
        "--contact",
        json.dumps(c("prospect", "new", hubspotscore="120")),
        "--event",
        json.dumps(prop_event("hubspotscore", "120")),
        "--now",
        str(NOW),
    )
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "contact 51: prospect/new → mql/assigned" in text and "rows:    T3" in text
    assert "contact_status: prospect → mql" in text and "assign_owner  [assign_owner:51:once]" in text
    assert "mode='if_unowned'" in text and "body=" not in text


def test_explain_human_output_for_noop_and_history() -> None:
    noop = invoke("explain", "--contact", json.dumps(c("sql", "working")), "--event", json.dumps(ms("working")))
    assert "(unchanged)" in noop.stdout
    history = invoke(
        "explain",
        "--contact",
        json.dumps(c("customer", "active")),
        "--event",
        json.dumps(prop_event("contact_status", "customer")),
    )
    assert "history: needed" in history.stdout


def test_explain_reads_at_files_and_event_lists(tmp_path: Path) -> None:
    contact, events = tmp_path / "contact.json", tmp_path / "events.json"
    contact.write_text(json.dumps(contact_json(hubspotscore="150")), encoding="utf-8")
    events.write_text(json.dumps([created_event(), make_email_event("DELIVERED", created=T0 + 1)]), encoding="utf-8")
    result = invoke("explain", "--contact", f"@{contact}", "--event", f"@{events}", "--json", "--now", str(NOW))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == ["T1", "T2", "T3"]


def _bad_config(tmp_path: Path) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(
        CONFIG.read_text(encoding="utf-8").replace("dead_milestone: dead", "dead_milestone: gone"),
        encoding="utf-8",
    )
    return str(path)


BAD_INPUT = [
    pytest.param("{not json", json.dumps(created_event()), "--contact: not valid JSON", id="bad-contact-json"),
    pytest.param(json.dumps(contact_json()), "[{]", "--event: not valid JSON", id="bad-event-json"),
    pytest.param(
        json.dumps(contact_json()),
        json.dumps(make_event(subscriptionType="deal.creation")),
        "--event: subscriptionType: unknown subscription type 'deal.creation'",
        id="unknown-subscription",
    ),
    pytest.param(
        json.dumps({"id": "51"}),
        json.dumps(created_event()),
        '--contact: contact: has no "properties"',
        id="contact-without-properties",
    ),
    pytest.param(
        json.dumps([1]),
        json.dumps(created_event()),
        "--contact: contact: must be a JSON object",
        id="contact-not-object",
    ),
    pytest.param(json.dumps(contact_json()), "[]", "--event: the list of events is empty", id="no-events"),
    pytest.param(
        json.dumps(contact_json()),
        json.dumps(make_email_event(created=None)),
        "--event: created: required",
        id="email-without-time",
    ),
    pytest.param(
        "@/nonexistent/contact.json", json.dumps(created_event()), "--contact: cannot read", id="missing-file"
    ),
]


@pytest.mark.parametrize(("contact", "event", "message"), BAD_INPUT)
def test_explain_bad_input_exits_2_with_one_line(contact: str, event: str, message: str) -> None:
    result = invoke("explain", "--contact", contact, "--event", event, "--json")
    assert result.exit_code == 2
    assert result.stdout == "" and "Traceback" not in result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: {message}"), result.stderr


def test_explain_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = _bad_config(tmp_path)
    result = invoke(
        "explain",
        "--contact",
        json.dumps(contact_json()),
        "--event",
        json.dumps(created_event()),
        "--config",
        bad,
    )
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert bad in result.stderr and "dead_milestone: unknown milestone 'gone'" in result.stderr


def test_validate_config_ok() -> None:
    result = invoke("validate-config", str(CONFIG))
    assert result.exit_code == 0
    first, summary = result.stdout.splitlines()
    assert first == f"config OK: {CONFIG}"
    assert "5 statuses (prospect < mql < srl < sql < customer)" in summary and "app id 4242" in summary


def test_validate_config_honours_lifecycle_config(tmp_path: Path) -> None:
    result = invoke("validate-config", env={"LIFECYCLE_CONFIG": _bad_config(tmp_path)})
    assert result.exit_code == 2 and "bad.yaml: dead_milestone" in result.stderr
    assert invoke("validate-config").stdout.startswith("config OK: ")


def test_validate_config_bad_prints_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    text = CONFIG.read_text(encoding="utf-8").replace("dead_milestone: dead", "dead_milestone: gone")
    path.write_text(text.replace("threshold: 100", "threshold: 100\n  extra: 1"), encoding="utf-8")
    result = invoke("validate-config", str(path))
    assert result.exit_code == 2 and result.stdout == "" and "Traceback" not in result.output
    assert all(line.startswith(f"{path}: ") for line in result.stderr.splitlines())


def test_diagram_prints_mermaid_with_every_status() -> None:
    result = invoke("diagram", "--config", str(CONFIG))
    assert result.exit_code == 0 and result.stdout.startswith("stateDiagram-v2\n")
    for status in ("prospect", "mql", "srl", "sql", "customer"):
        assert f"state {status} {{" in result.stdout


def test_diagram_bad_config_exits_2(tmp_path: Path) -> None:
    result = invoke("diagram", "--config", _bad_config(tmp_path))
    assert result.exit_code == 2 and result.stderr.startswith("error: ")


def test_commands_are_exported_for_the_lazy_group() -> None:
    assert (explain.name, validate_config.name, diagram.name) == ("explain", "validate-config", "diagram")
