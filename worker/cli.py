"""The `lifecycle` command: one click group whose subcommands load lazily.

Each subcommand lives in the module that owns it ("module:attr" below), so `lifecycle
explain` never imports the HubSpot SDK and `lifecycle sandbox` never imports RQ.
Exit codes: 0 ok, 1 some items failed, 2 usage or configuration error.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

COMMANDS: dict[str, str] = {
    "explain": "worker.cli_rules:explain",
    "validate-config": "worker.cli_rules:validate_config",
    "diagram": "worker.cli_rules:diagram",
    "sandbox": "sandbox.cli:sandbox",
    "serve": "webhooks.cli:serve",
    "worker": "worker.cli_worker:worker",
    "setup-portal": "worker.setup_portal:setup_portal",
    "failed": "worker.cli_ops:failed",
    "replay": "worker.cli_ops:replay",
    "status": "worker.cli_ops:status",
    "demo": "worker.demo:demo",
    "reconcile": "worker.cli_reconcile:reconcile",
}


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that subcommand runs."""

    def __init__(self, *args: Any, lazy: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module_name, attr = self.lazy[cmd_name].split(":")
            command = getattr(importlib.import_module(module_name), attr)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hubspot-lifecycle-worker", prog_name="lifecycle")
def main() -> None:
    """Keep the HubSpot contact status/milestone lifecycle true, automatically."""


if __name__ == "__main__":
    main()
