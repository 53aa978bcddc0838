"""The README keeps telling the truth: its diagram is the one the rules generate, and its
two set-up commands are the Makefile targets CI runs."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from worker.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_readme_diagram_is_what_lifecycle_diagram_prints() -> None:
    result = CliRunner().invoke(main, ["diagram"])
    assert result.exit_code == 0
    assert f"```mermaid\n{result.output.rstrip()}\n```" in (ROOT / "README.md").read_text()


def test_readme_opens_with_the_two_commands_and_ci_calls_the_test_one() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    assert [line.split("#")[0].strip() for line in first_block.strip().splitlines()] == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
