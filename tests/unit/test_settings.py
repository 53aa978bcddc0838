"""config.yaml validation (worker/settings.py): every error names the file, the key and the problem."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.factories import CONFIG
from worker.errors import ConfigError
from worker.settings import DEFAULT_CONFIG, load_settings

Mutation = Callable[[dict[str, Any]], None]


def base() -> dict[str, Any]:
    return copy.deepcopy(yaml.safe_load(CONFIG.read_text(encoding="utf-8")))


def write(tmp_path: Path, data: Any, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def error_for(tmp_path: Path, mutate: Mutation) -> str:
    data = base()
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_settings(path, environ={})
    return str(err.value)


def test_the_shipped_config_is_valid() -> None:
    settings = load_settings(CONFIG, environ={})
    policy = settings.policy
    assert settings.config_path == CONFIG and CONFIG == DEFAULT_CONFIG
    assert policy.status_values == ("prospect", "mql", "srl", "sql", "customer")
    assert [s.rank for s in policy.statuses] == [1, 2, 3, 4, 5]
    assert policy.app_id == "4242" and policy.score_threshold == 100
    assert policy.transition("sql", "return_to_nurture") is not None
    assert set(policy.reasons) == {"return_to_nurture", "unqualified"}


def _set(path: str, value: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is _DELETE:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value

    return mutate


_DELETE = object()

ERRORS = [
    pytest.param(
        _set("manual_transitions.0.milestone", "teleported"),
        "manual_transitions[0] (T6).milestone",
        "unknown milestone 'teleported'",
        id="unknown-milestone-in-transition",
    ),
    pytest.param(
        _set("manual_transitions.0.to", "sql/active"),
        "manual_transitions[0] (T6).to",
        "milestone 'active' is not allowed in sql",
        id="transition-target-not-allowed",
    ),
    pytest.param(
        _set("manual_transitions.0.to", "vip/working"),
        "manual_transitions[0] (T6).to",
        "unknown status 'vip'",
        id="transition-target-unknown-status",
    ),
    pytest.param(
        lambda d: d["manual_transitions"].append(dict(d["manual_transitions"][0])),
        "(T6)",
        "duplicate transition for prospect/qualified",
        id="duplicate-transition",
    ),
    pytest.param(
        _set("manual_transitions.0.actions", ["teleport"]),
        "manual_transitions[0] (T6).actions",
        "unknown action 'teleport'",
        id="unknown-action",
    ),
    pytest.param(
        _set("reasons.return_to_nurture", _DELETE),
        "manual_transitions[5] (T7).reason",
        "no reasons are configured for milestone 'return_to_nurture'",
        id="reason-row-without-reasons",
    ),
    pytest.param(
        lambda d: d["statuses"][1].update(automatic=[], manual=[]),
        "statuses[1] (mql)",
        "has no milestones",
        id="status-without-milestones",
    ),
    pytest.param(_set("statuses.1.value", "prospect"), "statuses", "duplicate value 'prospect'", id="duplicate-status"),
    pytest.param(
        _set("statuses.0.manual", ["qualified", "qualified", "dead"]),
        "statuses[0].manual",
        "duplicate milestone 'qualified'",
        id="duplicate-milestone",
    ),
    pytest.param(
        _set("statuses.0.manual", ["qualified", "vip", "dead"]),
        "statuses[0].manual",
        "unknown milestone 'vip'",
        id="unknown-milestone-in-status",
    ),
    pytest.param(
        _set("statuses.0.default_milestone", "working"),
        "statuses[0].default_milestone",
        "'working' is not allowed in prospect",
        id="default-milestone-not-allowed",
    ),
    pytest.param(
        lambda d: d["statuses"][4].update(automatic=["active"], manual=["inactive"]),
        "statuses[4]",
        "dead milestone 'dead' must be allowed in customer",
        id="dead-not-allowed",
    ),
    pytest.param(
        _set("reasons.unqualified.other_nurture", "Other"),
        "reasons",
        "duplicate reason value 'other_nurture'",
        id="duplicate-reason",
    ),
    pytest.param(_set("reasons.vip", {"x": "X"}), "reasons", "unknown milestone 'vip'", id="reason-unknown-milestone"),
    pytest.param(_set("reasons.unqualified", {}), "reasons.unqualified", "has no reasons", id="empty-reasons"),
    pytest.param(_set("score", _DELETE), "score", "Field required", id="missing-key"),
    pytest.param(_set("score.threshold", "high"), "score.threshold", "valid number", id="bad-type"),
    pytest.param(
        _set("score.from_statuses", ["vip"]),
        "score.from_statuses",
        "unknown status 'vip'",
        id="score-unknown-status",
    ),
    pytest.param(_set("score.to", "mql/working"), "score.to", "'working' is not allowed in mql", id="score-target"),
    pytest.param(_set("campaigns.from", "vip/new"), "campaigns.from", "unknown status 'vip'", id="campaign-source"),
    pytest.param(
        _set("initial", {"status": "prospect", "milestone": "working"}),
        "initial",
        "'working' is not allowed in prospect",
        id="initial-not-allowed",
    ),
    pytest.param(_set("dead_milestone", "gone"), "dead_milestone", "unknown milestone 'gone'", id="unknown-dead"),
    pytest.param(_set("deals.stages.vip", "x"), "deals.stages", "unknown milestone 'vip'", id="deal-stage"),
    pytest.param(
        _set("routing.default_owners", []),
        "routing.default_owners",
        "at least one owner",
        id="no-default-owner",
    ),
    pytest.param(
        _set("routing.verticals.retail", []),
        "routing.verticals.retail",
        "at least one owner",
        id="vertical-without-owners",
    ),
    pytest.param(_set("tasks.new_mql", _DELETE), "tasks", "missing task template 'new_mql'", id="missing-task"),
    pytest.param(
        _set("tasks.new_mql.due_in_hours", -1),
        "tasks.new_mql.due_in_hours",
        "greater than or equal",
        id="negative-due",
    ),
    pytest.param(
        _set("properties.contact.status", _DELETE),
        "properties.contact",
        "missing 'status'",
        id="missing-property-name",
    ),
    pytest.param(_set("statuse", []), "statuse", "Extra inputs are not permitted", id="typo-key"),
    pytest.param(
        _set("access_token", "pat-na1-secret"),
        "access_token",
        "Extra inputs are not permitted",
        id="secret-in-file-refused",
    ),
    pytest.param(
        _set("webhooks.dedupe_ttl_s", 60),
        "webhooks.dedupe_ttl_s",
        "greater than or equal to 86400",
        id="dedupe-shorter-than-retries",
    ),
]


@pytest.mark.parametrize(("mutate", "key", "problem"), ERRORS)
def test_each_error_names_the_file_the_key_and_the_problem(
    tmp_path: Path, mutate: Mutation, key: str, problem: str
) -> None:
    message = error_for(tmp_path, mutate)
    path = str(tmp_path / "config.yaml")
    line = next((ln for ln in message.splitlines() if key in ln and problem in ln), None)
    assert line is not None, message
    assert line.startswith(f"{path}: "), message
    assert all(ln.startswith(f"{path}: ") for ln in message.splitlines())


FILE_ERRORS = [
    pytest.param("statuses: [\n  - value: prospect\n", "not valid YAML at line", id="bad-yaml"),
    pytest.param("- a\n- b\n", "(top level): must be a mapping", id="not-a-mapping"),
    pytest.param("", "(top level): must be a mapping", id="empty"),
]


@pytest.mark.parametrize(("text", "problem"), FILE_ERRORS)
def test_file_level_errors(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=None) as err:
        load_settings(path, environ={})
    assert str(err.value).startswith(f"{path}: ") and problem in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path / "nope.yaml", environ={})
    assert str(err.value).startswith(f"{tmp_path / 'nope.yaml'}: cannot read")


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    def mutate(d: dict[str, Any]) -> None:
        d["dead_milestone"] = "gone"
        d["manual_transitions"][0]["actions"] = ["teleport"]

    message = error_for(tmp_path, mutate)
    assert "dead_milestone" in message and "teleport" in message and len(message.splitlines()) >= 2


def test_hubspot_app_id_overrides_the_config() -> None:
    assert load_settings(CONFIG, environ={"HUBSPOT_APP_ID": "999"}).policy.app_id == "999"
    assert load_settings(CONFIG, environ={"HUBSPOT_APP_ID": ""}).policy.app_id == "4242"
    with pytest.raises(ConfigError, match="HUBSPOT_APP_ID: must be a number"):
        load_settings(CONFIG, environ={"HUBSPOT_APP_ID": "app-1"})


def test_bad_app_id_in_the_file_names_the_file(tmp_path: Path) -> None:
    message = error_for(tmp_path, _set("app_id", "my-app"))
    assert message.startswith(f"{tmp_path / 'config.yaml'}: app_id")


def test_lifecycle_config_names_another_file(tmp_path: Path) -> None:
    data = base()
    data["score"]["threshold"] = 42
    path = write(tmp_path, data, "other.yaml")
    settings = load_settings(environ={"LIFECYCLE_CONFIG": str(path)})
    assert settings.config_path == path and settings.policy.score_threshold == 42
    assert load_settings(CONFIG, environ={"LIFECYCLE_CONFIG": str(path)}).config_path == CONFIG  # a path wins


def test_secrets_come_only_from_the_environment_and_stay_out_of_repr() -> None:
    env = {
        "HUBSPOT_ACCESS_TOKEN": "pat-na1-TOKEN",
        "HUBSPOT_CLIENT_SECRET": "shh-SECRET",
        "REDIS_URL": "redis://cache:6379/2",
        "HUBSPOT_BASE_URL": "http://127.0.0.1:8765/",
    }
    settings = load_settings(CONFIG, environ=env)
    assert settings.access_token == "pat-na1-TOKEN" and settings.client_secret == "shh-SECRET"
    assert settings.redis_url == "redis://cache:6379/2" and settings.hubspot_base_url == "http://127.0.0.1:8765"
    assert "TOKEN" not in repr(settings) and "SECRET" not in repr(settings)
    bare = load_settings(CONFIG, environ={})
    assert bare.access_token is None and bare.client_secret is None
    with pytest.raises(ConfigError, match="HUBSPOT_ACCESS_TOKEN, HUBSPOT_CLIENT_SECRET"):
        bare.require("HUBSPOT_ACCESS_TOKEN", "HUBSPOT_CLIENT_SECRET")
    settings.require("HUBSPOT_ACCESS_TOKEN")


def test_redis_password_stays_out_of_repr() -> None:
    settings = load_settings(CONFIG, environ={"REDIS_URL": "redis://:hunter2@cache:6379/0"})
    assert "hunter2" not in repr(settings)
