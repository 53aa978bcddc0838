"""Company rollup (spec §6): account_status = highest status rank; customer accounts suppress lead-gen."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from rules.model import ContactRollupInput
from rules.rollup import rollup_company
from tests.factories import policy


def people(*rows: tuple[str | None, str | None]) -> list[ContactRollupInput]:
    """Contacts c1, c2, ... with (status, lead_gen_suppressed)."""
    return [ContactRollupInput(f"c{i}", status, flag) for i, (status, flag) in enumerate(rows, start=1)]


def suppress(value: str, *ids: str) -> dict[str, dict[str, str]]:
    return {cid: {"lead_gen_suppressed": value} for cid in ids}


ROLLUPS = [
    pytest.param(
        None,
        people(("prospect", None), ("sql", None), ("mql", None)),
        {"account_status": "sql"},
        {},
        id="highest-rank-wins",
    ),
    pytest.param(
        "srl",
        people(("prospect", "false"), ("mql", "false")),
        {"account_status": "mql"},
        {},
        id="lower-account-follows-its-contacts",
    ),
    pytest.param(
        None,
        people(("bogus", None), (None, None), ("srl", None)),
        {"account_status": "srl"},
        {},
        id="unknown-statuses-ignored",
    ),
    pytest.param(
        "mql",
        people(("customer", None), ("sql", "false"), ("prospect", None)),
        {"account_status": "customer"},
        suppress("true", "c2", "c3"),
        id="poc-customer-suppresses-others",
    ),
    pytest.param(
        "customer",
        people(("customer", "false"), ("sql", "true"), ("mql", "false")),
        {},
        suppress("true", "c3"),
        id="suppression-only-changed-values",
    ),
    pytest.param(
        "customer",
        people(("sql", "true"), ("mql", "TRUE")),
        {"account_status": "sql"},
        suppress("false", "c1", "c2"),
        id="suppression-off-when-no-customer",
    ),
    pytest.param("sql", people(("sql", "false"), ("prospect", None)), {}, {}, id="no-op"),
    pytest.param("customer", [], {}, {}, id="no-contacts-leaves-account"),
    pytest.param(
        "customer",
        people(("bogus", "false"), (None, "true")),
        {},
        suppress("true", "c1"),
        id="no-known-status-leaves-account",
    ),
    pytest.param(None, [], {}, {}, id="nothing-at-all"),
]


@pytest.mark.parametrize(("account", "contacts", "company_updates", "contact_updates"), ROLLUPS)
def test_rollup_company(
    account: str | None,
    contacts: list[ContactRollupInput],
    company_updates: dict[str, str],
    contact_updates: dict[str, Any],
) -> None:
    d = rollup_company("9001", {"account_status": account, "name": "Acme"}, contacts, policy())
    assert d.company_id == "9001"
    assert dict(d.company_updates) == company_updates
    assert {k: dict(v) for k, v in d.contact_updates.items()} == contact_updates
    assert d.reason.startswith("Company 9001: ") and d.reason.endswith(".") and "\n" not in d.reason


def test_a_contact_suppressed_by_another_customer_company_stays_suppressed() -> None:
    contacts = [
        ContactRollupInput("c1", "sql", "true", suppressed_elsewhere=True),
        ContactRollupInput("c2", "sql", "true"),
    ]
    d = rollup_company("9001", {"account_status": "sql"}, contacts, policy())
    assert {k: dict(v) for k, v in d.contact_updates.items()} == suppress("false", "c2")


def test_reason_says_what_changed() -> None:
    d = rollup_company("9001", {"account_status": "mql"}, people(("customer", None), ("sql", None)), policy())
    assert "mql → customer" in d.reason and "1 contact(s)" in d.reason
    assert "stays" in rollup_company("9", {"account_status": "sql"}, people(("sql", None)), policy()).reason
    assert "no contact with a known status" in rollup_company("9", {}, [], policy()).reason


def test_rollup_reads_names_from_policy() -> None:
    names = dataclasses.replace(policy().company, account_status="acct")
    pol = dataclasses.replace(policy(), company=names)
    d = rollup_company("9", {"acct": "prospect"}, people(("mql", None)), pol)
    assert dict(d.company_updates) == {"acct": "mql"}


def test_rollup_without_statuses_writes_nothing() -> None:
    empty = dataclasses.replace(policy(), statuses=())
    d = rollup_company("9", {"account_status": "x"}, people(("mql", "true")), empty)
    assert not d.company_updates and dict(d.contact_updates["c1"]) == {"lead_gen_suppressed": "false"}


def test_reason_is_one_line_whatever_the_values() -> None:
    d = rollup_company("9", {"account_status": "odd\nvalue"}, [], policy())
    assert "\n" not in d.reason and "odd value" in d.reason
