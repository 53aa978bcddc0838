"""On-call commands: `lifecycle failed list|show|purge`, `lifecycle replay`, `lifecycle status`.

Thin: parse the options, call `worker/ops.py`, print (rich tables, or `--json`). Exit codes:
0 ok (or nothing to do), 1 some items failed, 2 usage or configuration error (one line on
stderr, never a traceback). Settings come from `--config`/$LIFECYCLE_CONFIG and the
environment (REDIS_URL, HUBSPOT_*), through `load_settings`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import time
from datetime import datetime
from typing import Any, NoReturn
from urllib.parse import urlparse

import click
from redis.exceptions import RedisError
from rich.console import Console
from rich.table import Table

from worker import ops
from worker.deps import Deps, make_deps
from worker.errors import ConfigError, ReplayError
from worker.settings import load_settings

CONFIG_HELP = "config file (default: $LIFECYCLE_CONFIG, else the bundled config.yaml)"
config_option = click.option("--config", envvar="LIFECYCLE_CONFIG", metavar="PATH", help=CONFIG_HELP)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_RATE = re.compile(r"^(\d+(?:\.\d+)?)(?:/(s|m|min))?$")


class Duration(click.ParamType[float, Any]):
    """30s, 15m, 2h, 30d → seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, int | float):
            return float(value)
        match = _DURATION.match(str(value).strip().lower())
        if str(value).strip() == "0":
            return 0.0
        if not match:
            self.fail(f"{value!r} is not a duration (like 30s, 15m, 2h, 30d)", param, ctx)
        return float(match[1]) * _UNITS[match[2]]


class Rate(click.ParamType[float, Any]):
    """5/s, 60/m (or a bare 5, per second) → jobs per second."""

    name = "rate"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        match = _RATE.match(str(value).strip().lower())
        if not match or float(match[1]) <= 0:
            self.fail(f"{value!r} is not a positive rate (like 5/s or 60/m)", param, ctx)
        return float(match[1]) / (60 if match[2] in ("m", "min") else 1)


class _OneLineUsage:
    """Bad options exit 2 with one line on stderr (click's default prints the usage block);
    Redis failing mid-command exits 1 with one line, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except RedisError as exc:
            click.echo(f"error: redis: {exc}", err=True)
            sys.exit(1)

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            context: click.Context = super().make_context(  # type: ignore[misc]
                info_name, args, parent=parent, **extra)
            return context
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            where = f" (see '{exc.ctx.command_path} -h')" if exc.ctx else ""
            _fail(f"{exc.format_message()}{where}")


class _Command(_OneLineUsage, click.Command):
    pass


class _Group(_OneLineUsage, click.Group):
    command_class = _Command


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(2)


def _deps(config: str | None, *, hubspot: bool) -> Deps:
    """Settings, Redis (pinged) and, when `hubspot`, the gateway. Config or Redis trouble exits 2."""
    try:
        settings = load_settings(config)
        if not hubspot:  # this command reads and writes Redis only: it needs no HubSpot token
            settings = dataclasses.replace(settings, access_token=settings.access_token or "not-needed")
        deps = make_deps(settings)
    except ConfigError as exc:
        _fail("; ".join(str(exc).splitlines()))
    try:
        deps.redis.ping()
    except RedisError as exc:
        url = urlparse(settings.redis_url)  # never print the password
        _fail(f"REDIS_URL: no answer from redis at {url.hostname}:{url.port or 6379}{url.path}: {exc}")
    return deps


def _console() -> Console:
    """A console on the current stdout; markup off, so "[...]" in errors and ids prints as is."""
    return Console(highlight=False, markup=False)


def _ago(when: datetime | str | None) -> str:
    if when is None:
        return "?"
    if isinstance(when, str):
        when = datetime.fromisoformat(when)
    seconds = max(0, int(time.time() - when.timestamp()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{when:%Y-%m-%d %H:%M} ({seconds // size}{unit} ago)"
    return f"{when:%Y-%m-%d %H:%M:%S} ({seconds}s ago)"


def _attempts(item: dict[str, Any]) -> str:
    return str(item["attempts"]) + (f" (+{item['retries']} retries)" if item["retries"] else "")


# -- lifecycle failed ---------------------------------------------------------------------------------
@click.group(cls=_Group)
def failed() -> None:
    """Inspect and purge failed jobs (replay them with `lifecycle replay`)."""


@failed.command("list")
@click.option("--since", type=Duration(), help="only jobs failed in the last DURATION (30s, 15m, 2h, 30d)")
@click.option("--error", "error_text", metavar="TEXT", help="only jobs whose error contains TEXT")
@click.option("--json", "as_json", is_flag=True, help="print one JSON array instead of a table")
@config_option
def list_(since: float | None, error_text: str | None, as_json: bool, config: str | None) -> None:
    """List failed jobs: id, when, contacts, events, the error in one line, attempts."""
    deps = _deps(config, hubspot=False)
    items = [f.as_json() for f in ops.list_failed(deps, since_s=since, error=error_text)]
    if as_json:
        click.echo(json.dumps(items))
        return
    if not items:
        click.echo("No failed jobs.")
        return
    table = Table(title=f"{len(items)} failed job{'s' * (len(items) != 1)} on queue {deps.settings.worker.queue}")
    table.add_column("job", no_wrap=True)
    table.add_column("failed at")
    for name in ("contacts", "events"):
        table.add_column(name, justify="right")
    table.add_column("attempts", justify="right")
    table.add_column("error", overflow="fold")
    for item in items:
        table.add_row(item["id"], _ago(item["failed_at"]), str(item["contacts"]), str(item["events"]),
                      _attempts(item), item["error"])
    _console().print(table)


@failed.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@config_option
def show(job_id: str, as_json: bool, config: str | None) -> None:
    """Show a failed job: its events, the full error and its contacts' current lifecycle values."""
    deps = _deps(config, hubspot=True)
    try:
        data = ops.show_failed(deps, job_id)
    except ReplayError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(data))
        return
    out = _console()
    where = "in the failed registry" if data["in_failed_registry"] else "NOT in the failed registry"
    out.print(f"job {data['id']} — failed {_ago(data['failed_at'])}, {where}; "
              f"attempts {_attempts(data)}; {data['contacts']} contacts, {data['events']} events", style="bold")
    if data["absorbed"]:
        out.print(f"absorbed jobs (replayed and purged with it): {', '.join(data['absorbed'])}")
    out.print(_events_table(data["event_list"]))
    out.print(_current_table(data, deps))
    out.print("error", style="bold")
    out.print(data["error_full"].rstrip())


def _events_table(events: list[dict[str, Any]]) -> Table:
    table = Table(title="events")
    for name in ("job", "contact / email", "type", "property", "value", "source", "occurred"):
        table.add_column(name, overflow="fold")
    for e in events:
        table.add_row(e["job"], e["id"], e["type"], e["property"] or "", e["value"] or "", e["source"] or "",
                      str(e["occurred_at"] or ""))
    return table


def _current_table(data: dict[str, Any], deps: Deps) -> Table | str:
    if data["current_error"]:
        return f"current values: unavailable ({data['current_error']})"
    c = deps.settings.policy.contact
    names = [c.email, c.status, c.milestone, c.reason, c.owner]
    table = Table(title="current values in HubSpot")
    table.add_column("contact", no_wrap=True)
    for name in names:
        table.add_column(name, overflow="fold")
    for cid, props in data["current"].items():
        table.add_row(cid, *(["(deleted or merged away)"] + [""] * (len(names) - 1) if props is None
                             else [props.get(n) or "" for n in names]))
    return table


@failed.command("purge")
@click.option("--older-than", type=Duration(), default="30d", show_default=True, envvar="LIFECYCLE_PURGE_OLDER_THAN",
              show_envvar=True, help="delete jobs that failed at least DURATION ago")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@config_option
def purge(older_than: float, yes: bool, config: str | None) -> None:
    """Delete old failed jobs, with the jobs they had absorbed. They can no longer be replayed."""
    deps = _deps(config, hubspot=False)
    count = sum(1 for f in ops.list_failed(deps) if ops.is_older(f, older_than))
    if not count:
        click.echo("Nothing to purge.")
        return
    if not yes:
        click.confirm(f"Delete {count} failed job{'s' * (count != 1)} (and the jobs they absorbed)? "
                      "They cannot be replayed afterwards", abort=True)
    purged = ops.purge_failed(deps, older_than)
    click.echo(f"{purged} failed job{'s' * (purged != 1)} purged.")


# -- lifecycle replay ---------------------------------------------------------------------------------
@click.command(cls=_Command)
@click.argument("job_ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="every failed job")
@click.option("--since", type=Duration(), help="failed jobs of the last DURATION (30s, 15m, 2h, 30d)")
@click.option("--error", "error_text", metavar="TEXT", help="failed jobs whose error contains TEXT")
@click.option("--dry-run", is_flag=True, help="print what each job would write now; change nothing")
@click.option("--rate", type=Rate(), envvar="LIFECYCLE_REPLAY_RATE", show_envvar=True,
              help="re-enqueue at most N jobs per second (N/s) or minute (N/m)")
@config_option
def replay(job_ids: tuple[str, ...], all_: bool, since: float | None, error_text: str | None, dry_run: bool,
           rate: float | None, config: str | None) -> None:
    """Put failed jobs back on their queue, each exactly once, with the jobs it had absorbed.

    Prints one line per job and a summary. Exit 0 when all were replayed (or nothing had
    failed), 1 when any could not be, 2 on a usage or configuration error.
    """
    selecting = all_ or since is not None or error_text is not None
    if not job_ids and not selecting:
        _fail("say which jobs: JOB_ID..., or --all, --since DURATION or --error TEXT (see 'lifecycle replay -h')")
    if job_ids and selecting:
        _fail("give JOB_IDs or --all/--since/--error, not both")
    deps = _deps(config, hubspot=dry_run)
    ids = list(dict.fromkeys(job_ids)) or [f.id for f in ops.list_failed(deps, since_s=since, error=error_text)]
    if not ids:
        click.echo("Nothing to replay.")
        return
    registry = ops.failed_registry(deps)
    failures = 0
    for n, job_id in enumerate(ids):
        if rate and n and not dry_run:
            time.sleep(1 / rate)
        try:
            click.echo(f"job {job_id}: {ops.replay_one(deps, registry, job_id, dry_run=dry_run)}")
        except ReplayError as exc:
            failures += 1
            click.echo(str(exc), err=True)
    click.echo(f"{len(ids) - failures} replayed, {failures} failed" + (" (dry run)" if dry_run else ""))
    sys.exit(1 if failures else 0)


# -- lifecycle status ---------------------------------------------------------------------------------
@click.command(cls=_Command)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@config_option
def status(as_json: bool, config: str | None) -> None:
    """Queues, workers alive, failed jobs, rate-limiter headroom and the last reconcile, on one screen."""
    data = ops.status(_deps(config, hubspot=False))
    if as_json:
        click.echo(json.dumps(data))
        return
    out = _console()
    queues = ", ".join(f"{name} {count}" for name, count in sorted(data["queues"].items()))
    out.print(f"queue {data['queue']}: {data['queues'][data['queue']]} waiting, {data['started']} started, "
              f"{data['scheduled']} scheduled (retries), {data['failed']} failed", style="bold")
    out.print(f"queue depths: {queues}")
    api, search = data["limiter"]["api"], data["limiter"]["search"]
    out.print(f"rate limiter: {api['used']}/{api['limit']} requests in the last {api['window_s']:g} s "
              f"(headroom {api['limit'] - api['used']}); searches {search['used']}/{search['limit']} "
              f"per {search['window_s']:g} s")
    out.print(f"last reconcile: {_reconcile_text(data['last_reconcile'])}")
    out.print(_workers_table(data["workers"]))
    _print_redis(out, data["redis"])


def _print_redis(out: Console, found: dict[str, Any]) -> None:
    if not found["problems"]:
        out.print(f"redis: maxmemory-policy {found['maxmemory_policy']}, appendonly {found['appendonly']} "
                  f"(appendfsync {found['appendfsync']}): jobs and ledger are kept")
    for problem in found["problems"]:
        out.print(f"redis: WARNING {problem}", style="yellow", markup=False)


def _reconcile_text(last: dict[str, Any] | None) -> str:
    if last is None:
        return "never (no lc:reconcile:last in Redis)"
    head = ""
    if isinstance(last.get("finished_at"), str):
        try:
            head = f"finished {_ago(last['finished_at'])}; "
        except ValueError:
            head = f"finished {last['finished_at']}; "
    return head + ", ".join(f"{k}={v}" for k, v in last.items() if k not in ("finished_at", "rows"))


def _workers_table(workers: list[dict[str, Any]]) -> Table | str:
    if not workers:
        return "workers alive: 0 — nothing is processing the queue"
    table = Table(title=f"workers alive: {len(workers)}")
    for name in ("name", "state", "queues", "current job", "last heartbeat"):
        table.add_column(name, overflow="fold")
    for w in workers:
        table.add_row(w["name"], w["state"], ",".join(w["queues"]), w["current_job"] or "",
                      _ago(w["last_heartbeat"]))
    return table
