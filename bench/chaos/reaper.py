"""Abandoned jobs: measuring how fast they are recovered, and what the reaper did.

RQ 3 finds a job abandoned by a killed worker only when both
- its StartedJobRegistry entry has expired: the work horse's last heartbeat + ttl + 60 s,
  ttl = min(job timeout, job_monitoring_interval=30 s) + 60 s, i.e. ~90-150 s, and
- some worker runs its registry maintenance: at start, then every `maintenance_interval`
  (RQ's default 600 s; `lifecycle worker` uses 30 s) — or anyone reads the registry through
  RQ (`.count`, `get_job_ids()`), which runs the same cleanup.
It then retries the job if it has retries left, else moves it to the FailedJobRegistry.

The reaper that recovers them in seconds is now part of the product: `worker/reaper.py`, run
by every `lifecycle worker` (`worker.reaper` in config.yaml; docs/chaos.md, finding 7). The
chaos system runs it inside its workers; a scenario that measures RQ alone turns it off in
their config (`SystemOptions.reaper`). `reaper_actions()` reads what the workers' reapers did
from their JSON logs.

`RecoveryTracker` measures, for each kill, the time from the SIGKILL to the abandoned job
leaving "started" (detected) and to it being "finished" (recovered).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.chaos.system import ChaosSystem


def reaper_actions(system: ChaosSystem) -> dict[str, Any]:
    """What the workers' reapers logged: abandoned jobs recovered (job, worker, reason, outcome)
    and overdue scheduled jobs enqueued (job, seconds overdue)."""
    recovered: list[dict[str, Any]] = []
    enqueued: list[tuple[str, float]] = []
    for path in sorted(Path(system.log_dir).glob("worker*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if not line.startswith("{") or not any(e in line for e in ("abandoned_job_", "overdue_job_")):
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == "abandoned_job_recovered":
                recovered.append({k: entry.get(k) for k in ("job_id", "worker", "reason", "outcome", "timestamp")}
                                 | {"by": path.stem})
            elif entry.get("event") == "overdue_job_enqueued":
                enqueued.append((str(entry.get("job_id")), float(entry.get("overdue_s") or 0)))
    return {"reaped": len(recovered), "recovered": recovered, "overdue_scheduled_enqueued": enqueued}


@dataclass
class Kill:
    at: float                      # monotonic
    worker: str
    job_id: str | None
    detected_s: float | None = None
    recovered_s: float | None = None
    statuses: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"worker": self.worker, "job": self.job_id, "detected_s": self.detected_s,
                "recovered_s": self.recovered_s, "statuses": self.statuses}


class RecoveryTracker:
    """Watch each killed job's status (from its RQ hash) until it is finished."""

    def __init__(self, system: ChaosSystem) -> None:
        self.system = system
        self.kills: list[Kill] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="recovery")
        self._thread.start()

    def kill_busy_worker(self, wait_s: float = 4.0) -> Kill:
        """SIGKILL a worker that is running a job (waiting up to `wait_s` for one), else any worker."""
        deadline = time.monotonic() + wait_s
        busy: dict[str, str] = {}
        while time.monotonic() < deadline:
            busy = self.system.current_jobs()
            if busy:
                break
            time.sleep(0.05)
        if busy:
            worker, job_id = sorted(busy.items())[0]
        else:
            alive = [w for w in self.system.worker_names if self.system.procs.alive(w)]
            worker, job_id = (alive or self.system.worker_names)[0], None
        pids = self.system.kill_worker(worker)
        kill = Kill(time.monotonic(), worker, job_id)
        kill.statuses.append(f"killed pids {pids}")
        if job_id and self.system.job_status(job_id) != "started":
            kill.statuses.append(f"{job_id} {self.system.job_status(job_id)} at the kill (not mid-job)")
            kill.job_id = None
        self.kills.append(kill)
        return kill

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            for k in self.kills:
                if k.job_id is None or k.recovered_s is not None:
                    continue
                status = self.system.job_status(k.job_id) or "gone"
                if k.statuses[-1] != status:
                    k.statuses.append(status)
                elapsed = round(time.monotonic() - k.at, 2)
                if k.detected_s is None and status != "started":
                    k.detected_s = elapsed
                if status in ("finished", "gone"):
                    k.recovered_s = elapsed

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def summary(self) -> dict[str, Any]:
        with_job = [k for k in self.kills if k.job_id]
        rec = sorted(k.recovered_s for k in with_job if k.recovered_s is not None)
        det = sorted(k.detected_s for k in with_job if k.detected_s is not None)
        return {"kills": len(self.kills), "kills_mid_job": len(with_job),
                "unrecovered": sum(1 for k in with_job if k.recovered_s is None),
                "detect_s": {"min": det[0], "max": det[-1]} if det else None,
                "recover_s": {"min": rec[0], "median": rec[len(rec) // 2], "max": rec[-1]} if rec else None,
                "each": [k.as_json() for k in self.kills]}
