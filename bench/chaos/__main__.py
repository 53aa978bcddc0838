"""`python -m bench.chaos [--scenario NAME|all] [--short] [--soak-minutes 30] [--json PATH]` (`make chaos`).

Runs the fault-injection scenarios against the whole system (docs/chaos.md) and prints one
row per scenario; exit 0 when every promised zero is a zero, else 1.
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import sys
import time
import traceback
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.chaos.scenarios import SCENARIOS, Result

ORDER = ["worker-killed", "redis-restart", "hubspot-failing", "duplicates-and-disorder", "concurrent-edits",
         "hostile-input", "soak"]


def table(results: list[Result], title: str) -> Table:
    t = Table(title=title)
    for name, justify in (("scenario", "left"), ("actions", "right"), ("events", "right"), ("contacts", "right"),
                          ("lost", "right"), ("wrong", "right"), ("dup", "right"), ("5xx up", "right"),
                          ("bad ok", "right"), ("5xx bad", "right"),
                          ("replayed", "right"), ("recovery", "left"), ("time", "right"), ("", "left")):
        t.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for r in results:
        t.add_row(r.name, str(r.actions), str(r.events), f"{r.contacts}+{r.companies}co", str(r.lost), str(r.wrong),
                  str(r.duplicates), str(r.http_5xx_redis_up), _opt(r.bad_accepted), _opt(r.http_5xx_bad_input),
                  str(r.replayed_jobs), r.recovery, f"{r.seconds:.0f}s",
                  "[green]ok[/]" if r.ok else "[red]FAIL[/]")
    return t


def _opt(value: int | None) -> str:
    return "–" if value is None else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="all", choices=["all", *ORDER])
    parser.add_argument("--short", action="store_true", help="small counts, seconds not minutes, a 20 s soak")
    parser.add_argument("--soak-minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", dest="json_path", help="write the results here")
    args = parser.parse_args(argv)
    # `timeout`, a CI runner or kill send SIGTERM: unwind, so every scenario stops its processes
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    console = Console(highlight=False, width=max(Console().width, 170))
    names = ORDER if args.scenario == "all" else [args.scenario]
    results: list[Result] = []
    started = datetime.now(UTC)
    for name in names:
        console.print(f"[bold]{name}[/] ({'short' if args.short else 'full'}) …")
        t0 = time.monotonic()
        try:
            kwargs: dict[str, Any] = {"minutes": args.soak_minutes} if name == "soak" else {}
            result = SCENARIOS[name](args.short, args.seed, **kwargs)
        except Exception as exc:  # a scenario that cannot run is a failure, not a crash of the suite
            result = Result(name, args.short, seconds=round(time.monotonic() - t0, 1),
                            notes=[f"crashed: {type(exc).__name__}: {exc}"],
                            details={"traceback": traceback.format_exc()})
        results.append(result)
        mark = "[green]ok[/]" if result.ok else "[red]FAIL[/]"
        console.print(f"  {mark} lost {result.lost}, wrong {result.wrong}, duplicates {result.duplicates}, "
                      f"5xx (Redis up) {result.http_5xx_redis_up}; {result.recovery}; {result.seconds:.0f} s")
        for note in result.notes:
            console.print(f"  note: {note}")
        for problem in result.details.get("verdict", {}).get("problems", [])[:5]:
            console.print(f"  problem: {json.dumps(problem)[:400]}", markup=False)
    command = "python -m bench.chaos " + " ".join(argv if argv is not None else sys.argv[1:])
    console.print(table(results, f"chaos {started:%Y-%m-%d %H:%M} UTC — {command.strip()}"))
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump({"started": started.isoformat(), "command": command.strip(), "machine": {
                "python": platform.python_version(), "platform": platform.platform(), "cpus": _cpus()},
                "results": [r.as_json() for r in results]}, f, indent=1, default=str)
        console.print(f"results: {args.json_path}")
    return 0 if all(r.ok for r in results) else 1


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)


if __name__ == "__main__":
    sys.exit(main())
