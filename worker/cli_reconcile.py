"""`lifecycle reconcile`: the safety net for missed webhooks and the backfill of a new portal.

The command parses and prints; `worker.reconcile` does the work. With `--every` it runs once
per interval until SIGTERM/SIGINT (the Procfile's `scheduler:` line). Exit codes: 0 ok, 1 some
contacts failed, the run stopped early or another run holds the lock, 2 usage or config error.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from rules.triggers import format_ms
from worker.errors import ConfigError, HubSpotError
from worker.reconcile import MAX_BATCH, SEARCH_CAP, Options, ReconcileError, Report, RunState

if TYPE_CHECKING:
    from worker.deps import Deps

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(text: str) -> float:
    """Seconds in "90s", "15m", "2h", "1d", "1h30m" (a bare number is seconds). Raises ValueError."""
    cleaned = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(?:\.\d+)?", cleaned):
        seconds = float(cleaned)
    elif cleaned and re.fullmatch(f"(?:{_PART.pattern})+", cleaned):
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(cleaned))
    else:
        raise ValueError(f"expected a duration like 30m, 2h or 1d, got {text!r}")
    if seconds <= 0:
        raise ValueError(f"must be longer than zero, got {text!r}")
    return seconds


class _Bar:
    """A rich progress bar on stderr (only on a terminal): contacts seen of the search total, written, ETA."""

    def __init__(self, dry_run: bool) -> None:
        console = Console(stderr=True)
        self._label = "dry run" if dry_run else "reconcile"
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("contacts, {task.fields[written]} " + ("would change" if dry_run
                                                                                     else "written")),
                                  TimeRemainingColumn(), console=console, disable=not console.is_terminal)
        self._task: Any = None

    def started(self, state: RunState, resumed: bool) -> None:
        self._progress.start()
        description = f"{self._label} (resumed)" if resumed else self._label
        self._task = self._progress.add_task(description, total=state.total, completed=state.counts.contacts,
                                             written=state.counts.written)

    def advanced(self, state: RunState) -> None:
        c = state.counts
        total = max(state.total or 0, c.contacts) if state.total is not None else None
        self._progress.update(self._task, total=total, completed=c.contacts, written=c.written)

    def close(self) -> None:
        self._progress.stop()


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGTERM/SIGINT set the event (the run stops after its current page); a second SIGINT interrupts."""
    stop = threading.Event()

    def handle(signum: int, frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _row_key(row: str) -> tuple[int, str]:
    digits = "".join(ch for ch in row if ch.isdigit())
    return (int(digits) if digits else 10**6, row)


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _summary(report: Report, options: Options, watermark: bytes | str | None) -> list[str]:
    """The by-row lines and the one-line summary."""
    state, c = report.state, report.state.counts
    lines = [f"{row}: {_n(n, 'contact')}" for row, n in sorted(c.rows.items(), key=lambda kv: _row_key(kv[0]))]
    where = f"since {format_ms(state.since)}" if state.since else "from the beginning"
    changed = "would change" if options.dry_run else "written"
    counts = (f"{_n(c.contacts, 'contact')} looked at, {c.written} {changed}, {c.failed} failed, "
              f"{c.deferred} deferred, {_n(c.email_events, 'email event')}, {where}")
    notes = [f"{report.duration_s} s"] + (["resumed"] if report.resumed else [])
    if options.dry_run:
        notes.append("nothing was changed")
    elif report.completed and watermark is not None:
        notes.append(f"watermark {format_ms(int(watermark))}")
    head = "dry run: " if options.dry_run else "reconcile: "
    if report.stopped:
        head += f"stopped early ({report.stopped}); the next run resumes from the cursor: "
    return [*lines, f"{head}{counts} ({'; '.join(notes)})"]


def _duration(option: str, text: str | None) -> float | None:
    try:
        return parse_duration(text) if text else None
    except ValueError as exc:
        raise ValueError(f"{option}: {exc}") from None


def _options(since: str | None, all_: bool, dry_run: bool, batch: int, look_back: str, cap: int) -> Options:
    """Options from the command line; ValueError names the bad option."""
    if since and all_:
        raise ValueError("--since and --all: choose one")
    if not 1 <= batch <= MAX_BATCH:
        raise ValueError(f"--batch: must be between 1 and {MAX_BATCH}, got {batch}")
    if cap < 1:
        raise ValueError(f"--search-cap: must be at least 1, got {cap}")
    since_s, lookback_s = _duration("--since", since), _duration("--look-back", look_back)
    mode = "all" if all_ else "since" if since_s else "watermark"
    return Options(mode=mode, since_s=since_s, dry_run=dry_run, batch=batch, lookback_s=lookback_s or 0, cap=cap)


@click.command("reconcile")
@click.option("--since", metavar="DURATION", help="Contacts modified in the last DURATION (e.g. 2h, 30m, 1d).")
@click.option("--all", "all_", is_flag=True, help="From the beginning: the backfill of a new portal.")
@click.option("--dry-run", is_flag=True, help="Print what would change, by transition row; change nothing.")
@click.option("--batch", type=int, default=MAX_BATCH, show_default=True, envvar="LIFECYCLE_RECONCILE_BATCH",
              help=f"Contacts per page (1-{MAX_BATCH}): one search page, one batch read.")
@click.option("--look-back", "look_back", default="10m", show_default=True, metavar="DURATION",
              envvar="LIFECYCLE_RECONCILE_LOOKBACK", help="Start this long before the watermark (indexing lag).")
@click.option("--every", metavar="DURATION", help="Run forever, once per DURATION, until SIGTERM/SIGINT.")
@click.option("--config", "config", envvar="LIFECYCLE_CONFIG", help="config.yaml to use.")
@click.option("--search-cap", "cap", type=int, default=SEARCH_CAP, hidden=True,
              envvar="LIFECYCLE_RECONCILE_SEARCH_CAP", help="Results one search may reach (tests).")
def reconcile(since: str | None, all_: bool, dry_run: bool, batch: int, look_back: str, every: str | None,
              config: str | None, cap: int) -> None:
    """Run the rules over contacts changed since the last run (the watermark in Redis).

    Finds what webhooks missed (CRM search on lastmodifieddate with a look-back, plus the
    email events) and fixes it; `--all` is the backfill of a new portal. An interrupted run
    resumes where it stopped; the watermark moves only when a run completes.
    """
    try:
        options = _options(since, all_, dry_run, batch, look_back, cap)
        every_s = _duration("--every", every)
    except ValueError as exc:
        _fail(str(exc), 2)
    from worker.deps import make_deps
    from worker.logs import configure_logging
    from worker.settings import load_settings

    try:
        deps = make_deps(load_settings(config))
    except ConfigError as exc:
        _fail(str(exc), 2)
    configure_logging(os.environ.get("LOG_LEVEL", "WARNING"))
    with _stop_on_signals() as stop:
        if every_s is None:
            sys.exit(_run_once(deps, options, stop))
        try:
            while not stop.is_set():
                started = time.monotonic()
                _run_once(deps, options, stop)
                stop.wait(max(0.0, every_s - (time.monotonic() - started)))  # runs start once per interval
        except KeyboardInterrupt:
            _fail("interrupted", 1)
    sys.exit(0)


def _run_once(deps: Deps, options: Options, stop: threading.Event) -> int:
    """One run: 0 when it completed without failures, else 1 (the reason on stderr)."""
    import redis

    from worker.jobs import enqueue_payload
    from worker.reconcile import WATERMARK_KEY
    from worker.reconcile import reconcile as run

    bar = _Bar(options.dry_run)
    try:
        report = run(deps, options, requeue=lambda payload: _enqueue(enqueue_payload, deps, payload), reporter=bar,
                     should_stop=stop.is_set)
        watermark = deps.redis.get(WATERMARK_KEY)
    except (ReconcileError, HubSpotError) as exc:
        click.echo(f"lifecycle reconcile: {exc}", err=True)
        return 1
    except redis.RedisError as exc:
        click.echo(f"lifecycle reconcile: redis: {exc}", err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("lifecycle reconcile: interrupted; the next run resumes from the cursor", err=True)
        return 1
    finally:
        bar.close()
    for line in _summary(report, options, watermark):
        click.echo(line)
    return 0 if report.ok else 1


def _enqueue(enqueue: Any, deps: Deps, payload: Mapping[str, Any]) -> None:
    enqueue(deps, dict(payload))


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"lifecycle reconcile: {message}", err=True)
    sys.exit(code)
