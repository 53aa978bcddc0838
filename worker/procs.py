"""Run the Procfile's processes (sandbox, web, workers) as children, for the demo and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import requests


@dataclass
class Children:
    """Child processes started with one environment; `stop()` ends them all (SIGTERM, then SIGKILL)."""

    env: Mapping[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    log_dir: str | None = None

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        out = open(os.path.join(self.log_dir, f"{name}.log"), "wb") if self.log_dir else subprocess.DEVNULL
        proc = subprocess.Popen([sys.executable, "-m", "worker.cli", *args], env=dict(self.env), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs.get(name)
        if proc and proc.poll() is None:
            os.killpg(proc.pid, sig)
            proc.wait(10)

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return bool(proc and proc.poll() is None)

    def stop(self, timeout_s: float = 10.0) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout_s
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def stop_group(proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    """End a child started with `start_new_session=True`: SIGTERM its group, then SIGKILL."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def wait_http(url: str, timeout_s: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until `url` answers 2xx (or raise, also when `proc` died)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the process serving it exited with {proc.returncode}")
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s")
