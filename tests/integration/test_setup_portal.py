"""`lifecycle setup-portal` against the sandbox: creates what config names, idempotently,
and refuses to remove an option that records still use."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from sandbox.config import SandboxConfig
from sandbox.server import SandboxServer
from worker import setup_portal
from worker.cli import main
from worker.hubspot import HubSpotGateway
from worker.settings import load_settings

TOKEN = "setup-token"


@pytest.fixture()
def sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(port=0, seed="none", app_token=TOKEN, rate_limit="0")) as server:
        yield server


def _env(base: str) -> dict[str, str]:
    return {"HUBSPOT_BASE_URL": base, "HUBSPOT_ACCESS_TOKEN": TOKEN, "HUBSPOT_APP_ID": "4242"}


def test_first_run_creates_everything_and_the_second_changes_nothing(sandbox: SandboxServer) -> None:
    runner = CliRunner()
    dry = runner.invoke(main, ["setup-portal", "--dry-run"], env=_env(sandbox.base_url))
    assert dry.exit_code == 0, dry.output
    assert "would contacts: create property 'contact_status' (enumeration)" in dry.output
    first = runner.invoke(main, ["setup-portal"], env=_env(sandbox.base_url))
    assert first.exit_code == 0, first.output
    assert "contacts: create property group 'lifecycle'" in first.output
    assert "companies: create property 'account_status' (enumeration)" in first.output
    second = runner.invoke(main, ["setup-portal"], env=_env(sandbox.base_url))
    assert second.exit_code == 0, second.output
    assert "no changes" in second.output
    gw = HubSpotGateway(access_token=TOKEN, base_url=sandbox.base_url)
    milestone = gw.get_properties("contacts")["contact_milestone"]
    assert {o["value"] for o in milestone["options"]} >= {"new", "working", "convert_to_customer"}


def test_dry_run_changes_nothing(sandbox: SandboxServer) -> None:
    result = CliRunner().invoke(main, ["setup-portal", "--dry-run"], env=_env(sandbox.base_url))
    assert result.exit_code == 0
    gw = HubSpotGateway(access_token=TOKEN, base_url=sandbox.base_url)
    assert "contact_status" not in gw.get_properties("contacts")


def test_an_option_still_in_use_is_not_removed(sandbox: SandboxServer) -> None:
    settings = dataclasses.replace(load_settings(environ=_env(sandbox.base_url)), hubspot_base_url=sandbox.base_url)
    gw = HubSpotGateway(access_token=TOKEN, base_url=sandbox.base_url)
    setup_portal.apply(setup_portal.plan(settings, gw), gw)
    gw.update_property("contacts", "vertical", {"options": [
        *gw.get_properties("contacts")["vertical"]["options"],
        {"label": "Legacy", "value": "legacy", "displayOrder": 9, "hidden": False},
        {"label": "Unused", "value": "unused", "displayOrder": 10, "hidden": False}]})
    gw.create_objects("contacts", [{"properties": {"email": "legacy@ex.test", "vertical": "legacy"}}])
    plan = setup_portal.plan(settings, gw)
    assert any("'legacy' is not in config but 1 record(s) use it" in r for r in plan.refusals)
    assert any("remove ['unused']" in c for c in plan.changes)
    setup_portal.apply(plan, gw)
    values = {o["value"] for o in gw.get_properties("contacts")["vertical"]["options"]}
    assert "legacy" in values and "unused" not in values
