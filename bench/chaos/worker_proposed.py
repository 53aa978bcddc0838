"""`lifecycle worker` with the RQ settings proposed in docs/chaos.md (findings 6 and 7), to
measure them before they land in worker/cli_worker.py:

    Worker(..., maintenance_interval=30, worker_ttl=45)

maintenance_interval: how often a worker runs RQ's maintenance (abandoned-job cleanup, taking
over the scheduler lock); worker_ttl - 15 s is how long an idle worker blocks on the queue
between two looks at the clock. RQ's defaults are 600 s and 420 s.

    python -m bench.chaos.worker_proposed   (same options as `lifecycle worker`)
"""

from __future__ import annotations

import sys
from typing import Any

import rq


class ProposedWorker(rq.Worker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("maintenance_interval", 30)
        kwargs.setdefault("worker_ttl", 45)
        super().__init__(*args, **kwargs)


def main() -> None:
    rq.Worker = ProposedWorker  # type: ignore[misc]  # `lifecycle worker` does `from rq import Worker` when it runs
    from worker.cli import main as lifecycle

    sys.argv = ["lifecycle", "worker", *sys.argv[1:]]
    lifecycle()


if __name__ == "__main__":
    main()
