"""Scenario 6, bad and hostile input: `bench.fuzz` as a row of `make chaos` (docs/chaos.md).

The webhook server runs under gunicorn as the Procfile runs it, on a private Redis, and gets
signed hostile bodies drawn by hypothesis (tests/fuzz/strategies.py), forged, stale, future and
replayed signatures, 10 MB bodies, broken headers and slow clients (`bench/fuzz.py` says what
each phase sends). Promised: no 5xx, no request accepted that should have been refused, the
server alive at the end, and nothing in Redis that no 2xx reported.
"""

from __future__ import annotations

from bench import fuzz
from bench.chaos.result import Result


def hostile_input(short: bool, seed: int) -> Result:
    """60 s of fuzzing (10 s and no saturation probe with `short`)."""
    args = fuzz.parser().parse_args(["--seconds", "10" if short else "60", "--seed", str(seed)]
                                    + (["--no-saturation"] if short else []))
    outcome = fuzz.run(args)
    result = Result("hostile-input", short, seconds=round(outcome.seconds, 1), actions=outcome.requests,
                    bad_accepted=outcome.bad_accepted, http_5xx_bad_input=outcome.five_xx, ok=outcome.goals_met)
    forged = sum(r.sent for r in outcome.rows if "forged" in r.name or r.name.startswith("signatures"))
    result.recovery = (f"{outcome.requests} requests ({forged} forged or mis-signed); server alive: "
                       f"{'yes' if outcome.alive else 'NO'}; unexpected answers {outcome.unexpected}; "
                       f"events stored that no 2xx reported {outcome.unreported}")
    result.details["fuzz"] = {"summary": dict(outcome.summary),
                              "rows": [{k: v for k, v in r.__dict__.items()} for r in outcome.rows]}
    return result
