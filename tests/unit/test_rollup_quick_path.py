"""`worker.rollups.raised_status`: when a company's account status follows from its current value
and this job's status changes alone (so its members need not be read), and when it does not."""

from __future__ import annotations

import pytest

from worker.rollups import raised_status

RANKS = {"prospect": 1, "mql": 2, "srl": 3, "sql": 4, "customer": 5}


@pytest.mark.parametrize(("current", "changes", "expected"), [
    ("mql", [("prospect", "sql")], "sql"),  # up past the account: the new highest
    ("mql", [("prospect", "mql")], "mql"),  # up to the account: it stays
    ("mql", [("mql", "srl"), ("prospect", "sql")], "sql"),  # several, the highest wins
    ("srl", [(None, "prospect")], "srl"),  # a new status below the account, none before
    ("sql", [("prospect", "mql")], "sql"),  # below the account before and after
    ("mql", [("mql", "prospect")], None),  # may have been the holder, moving down
    ("sql", [("sql", "srl"), ("prospect", "sql")], "sql"),  # the holder moves down, another reaches it
    ("mql", [("mql", "customer")], None),  # customer drives suppression
    ("customer", [("prospect", "mql")], None),  # a customer account's flags depend on every member
    ("mql", [("customer", "sql")], None),  # leaving customer (the rules never do)
    (None, [("prospect", "mql")], None),  # no account status yet: read the members
    ("mql", [("prospect", "weird")], None),  # a status the policy does not know
    ("weird", [("prospect", "mql")], None),
    ("mql", [("weird", "prospect")], None),
    ("mql", [], "mql"),  # no change at all
])
def test_raised_status(current: str | None, changes: list[tuple[str | None, str | None]],
                       expected: str | None) -> None:
    assert raised_status(current, changes, RANKS) == expected
