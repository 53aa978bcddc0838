"""rules/ is pure: no I/O, clock, environment, randomness or logging (style.md §2), checked on the AST."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[2] / "rules"
FORBIDDEN_MODULES = frozenset(
    {
        "redis",
        "rq",
        "flask",
        "hubspot",
        "requests",
        "httpx",
        "urllib",
        "urllib3",
        "socket",
        "os",
        "sys",
        "time",
        "logging",
        "structlog",
        "random",
        "secrets",
        "uuid",
        "subprocess",
        "shutil",
        "pathlib",
        "io",
        "tempfile",
        "importlib",
        "threading",
        "asyncio",
        "yaml",
        "pydantic",
        "worker",
        "webhooks",
        "sandbox",
        "tools",
    }
)
FORBIDDEN_ATTRIBUTES = frozenset(
    {"now", "utcnow", "today", "time_ns", "monotonic", "perf_counter", "getenv", "environ"}
)
FORBIDDEN_CALLS = frozenset({"open", "print", "input", "eval", "exec", "__import__", "breakpoint"})


def impurities(source: str) -> list[str]:
    """Every impure construct in `source`: forbidden imports, clock/env attributes, I/O builtins."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in FORBIDDEN_MODULES:
            found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
            found.append(f".{node.attr}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            found.append(f"{node.func.id}()")
    return found


def rules_modules() -> list[Path]:
    return sorted(RULES.glob("*.py"))


@pytest.mark.parametrize("path", rules_modules(), ids=lambda p: p.name)
def test_rules_module_is_pure(path: Path) -> None:
    assert impurities(path.read_text(encoding="utf-8")) == []


def test_every_rules_module_is_checked() -> None:
    names = {p.name for p in rules_modules()}
    assert {
        "lifecycle.py",
        "triggers.py",
        "rollup.py",
        "diagram.py",
        "model.py",
        "policy.py",
        "errors.py",
    } <= names


BAD = [
    pytest.param("import os", "import os", id="os"),
    pytest.param("import redis.client", "import redis.client", id="redis"),
    pytest.param("from worker.settings import load_settings", "from worker.settings import ...", id="worker"),
    pytest.param("from rq import Queue", "from rq import ...", id="rq"),
    pytest.param("import time\nt = time.time()", "import time", id="time"),
    pytest.param("from datetime import datetime\nx = datetime.now()", ".now", id="datetime-now"),
    pytest.param("import datetime\nx = datetime.date.today()", ".today", id="date-today"),
    pytest.param("import random", "import random", id="random"),
    pytest.param("import logging", "import logging", id="logging"),
    pytest.param("print('x')", "print()", id="print"),
    pytest.param("open('f').read()", "open()", id="open"),
]


@pytest.mark.parametrize(("source", "found"), BAD)
def test_the_checker_catches_impurity(source: str, found: str) -> None:
    assert found in impurities(source)


def test_the_checker_allows_pure_code() -> None:
    assert impurities("from datetime import UTC, datetime\nx = datetime(2025, 1, 1, tzinfo=UTC)") == []
