"""`lifecycle reconcile` against the whole system: sandbox, real Redis, the webhook server, RQ.

Webhooks are paused in the sandbox while a rep (or HubSpot's email tool) changes something, so
nothing reaches the queue; reconcile must find the change by itself and run the same rules.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.e2e.system import APP_ID, APP_TOKEN, SECRET, System
from worker import reconcile as engine
from worker.cli import main
from worker.errors import HubSpotPermanentError, HubSpotTransientError
from worker.jobs import enqueue_payload

ROOT = Path(__file__).resolve().parents[2]


def _env(system: System) -> dict[str, str]:
    return {"HUBSPOT_ACCESS_TOKEN": APP_TOKEN, "HUBSPOT_CLIENT_SECRET": SECRET, "HUBSPOT_APP_ID": APP_ID,
            "REDIS_URL": system.redis_url, "HUBSPOT_BASE_URL": system.base}


def _reconcile(system: System, *args: str) -> Result:
    return CliRunner().invoke(main, ["reconcile", *args], env=_env(system))


def _state(system: System, cid: str) -> tuple[str, str]:
    p = system.contact(cid)
    return p.get("contact_status") or "", p.get("contact_milestone") or ""


@contextmanager
def _webhooks_lost(system: System) -> Iterator[None]:
    """Whatever happens inside never reaches the worker: webhooks are dropped, no email relay."""
    sandbox = system.sandbox.sandbox
    relay = sandbox.config
    sandbox.config = dataclasses.replace(relay, email_webhook_url=None)  # a portal without the email workflow
    system.session.post(f"{system.base}/_sandbox/webhooks/pause", timeout=10).raise_for_status()
    dropped = system.stats()["webhooks"]["dropped"]
    yield
    system.session.post(f"{system.base}/_sandbox/webhooks/resume", timeout=10).raise_for_status()
    sandbox.config = relay
    system.flush()
    assert system.stats()["webhooks"]["dropped"] > dropped
    assert system.queue.count == 0, "nothing may reach the queue"


def _writes(stats: dict[str, Any]) -> dict[str, int]:
    return {k: n for k, n in stats["calls"].items()
            if not k.startswith("GET ") and not k.endswith(("/search", "/batch/read"))}


class _Spy:
    """Wraps process_inbox: records the contact ids of every page it really processes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_on_call: int | None = None) -> None:
        self.pages: list[list[str]] = []
        self.calls = 0
        real = engine.process_inbox

        def spy(deps: Any, inbox: Any, **kw: Any) -> dict[str, Any]:
            self.calls += 1
            if self.calls == fail_on_call:
                raise HubSpotTransientError("contacts.batch.read: HubSpot answered 503", status=503)
            self.pages.append(sorted(inbox.contacts))
            return real(deps, inbox, **kw)

        monkeypatch.setattr(engine, "process_inbox", spy)

    @property
    def ids(self) -> list[str]:
        return [cid for page in self.pages for cid in page]


def test_finds_a_score_change_whose_webhook_was_never_delivered(system: System) -> None:
    cid = system.rep_create_contact(email="score@ex.test", hubspotscore=10, vertical="retail")
    system.settle()
    with _webhooks_lost(system):
        system.rep_update(cid, hubspotscore=150)
    system.settle()
    assert _state(system, cid) == ("prospect", "new")

    result = _reconcile(system, "--since", "1h")
    assert result.exit_code == 0, result.output
    assert "T3: 1 contact\n" in result.stdout
    assert _state(system, cid) == ("mql", "assigned")
    assert system.contact(cid)["hubspot_owner_id"] in ("201", "202")
    last = json.loads(system.conn.get(engine.LAST_KEY) or b"{}")
    assert last["completed"] and last["written"] == 1 and not last["dry_run"]
    assert system.conn.get(engine.WATERMARK_KEY) is None  # --since from no watermark covers no gap


def test_finds_a_missed_bounce_from_the_email_events(system: System) -> None:
    cid = system.rep_create_contact(email="bounce@ex.test")
    system.settle()
    with _webhooks_lost(system):
        system.email_event(type="BOUNCE", category="HARD_BOUNCE", recipient="Bounce@ex.test")
    assert _state(system, cid) == ("prospect", "new")

    result = _reconcile(system, "--since", "1h")
    assert result.exit_code == 0, result.output
    assert "T4: 1 contact\n" in result.stdout and "1 email event," in result.stdout
    assert _state(system, cid) == ("prospect", "dead")


def test_reverts_a_missed_manual_status_edit_thanks_to_history(system: System) -> None:
    cid = system.rep_create_contact(email="edit@ex.test", hubspotscore=120, vertical="marketplace")
    system.settle()
    assert _state(system, cid) == ("mql", "assigned")
    with _webhooks_lost(system):
        system.rep_update(cid, contact_status="customer")
    assert _state(system, cid) == ("customer", "assigned")

    result = _reconcile(system, "--since", "1h")
    assert result.exit_code == 0, result.output
    assert "T16: 1 contact\n" in result.stdout
    assert _state(system, cid) == ("mql", "assigned")
    subjects = [t["properties"].get("hs_task_subject") or "" for t in system.objects("tasks")]
    assert any(s.startswith("Contact status is locked") for s in subjects)


def test_dry_run_prints_the_rows_and_changes_nothing(system: System) -> None:
    a = system.rep_create_contact(email="a@ex.test", hubspotscore=10)
    b = system.rep_create_contact(email="b@ex.test", hubspotscore=120)
    system.settle()
    with _webhooks_lost(system):
        system.rep_update(a, hubspotscore=150)
        system.rep_update(b, contact_status="prospect")
        c = system.rep_create_contact(email="c@ex.test")
    before = system.stats()

    result = _reconcile(system, "--dry-run")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert {"T1: 1 contact", "T3: 1 contact", "T16: 1 contact"} <= set(lines)
    assert lines[-1].startswith("dry run: 3 contacts looked at, 3 would change") and "nothing was changed" in lines[-1]
    assert _writes(system.stats()) == _writes(before)
    assert (_state(system, a), _state(system, b), _state(system, c)) == (("prospect", "new"), ("prospect", "assigned"),
                                                                         ("", ""))
    assert system.conn.get(engine.WATERMARK_KEY) is None and system.conn.get(engine.CURSOR_KEY) is None
    assert json.loads(system.conn.get(engine.LAST_KEY) or b"{}")["dry_run"] is True


def test_an_interrupted_run_resumes_from_the_cursor_without_redoing_the_first_page(
        system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    with _webhooks_lost(system):
        ids = [system.rep_create_contact(email=f"r{i}@ex.test") for i in range(7)]
    failing = _Spy(monkeypatch, fail_on_call=2)
    first = _reconcile(system, "--batch", "3")  # no watermark yet: the backfill
    assert first.exit_code == 1
    assert "stopped early (HubSpot is unavailable" in first.stdout
    assert len(failing.pages) == 1 and len(failing.pages[0]) == 3
    assert system.conn.get(engine.CURSOR_KEY) is not None and system.conn.get(engine.WATERMARK_KEY) is None
    done = set(failing.pages[0])
    assert {cid for cid in ids if _state(system, cid) == ("prospect", "new")} == done

    again = _Spy(monkeypatch)
    second = _reconcile(system, "--batch", "3")
    assert second.exit_code == 0, second.output
    assert "resumed" in second.stdout.splitlines()[-1]
    assert not done & set(again.ids), "the first page must not be processed again"
    assert sorted(again.ids) == sorted(set(ids) - done)
    assert all(_state(system, cid) == ("prospect", "new") for cid in ids)
    assert system.conn.get(engine.CURSOR_KEY) is None
    until = json.loads(system.conn.get(engine.LAST_KEY) or b"{}")["until"]
    assert int(system.conn.get(engine.WATERMARK_KEY) or 0) == until


def test_a_stop_request_ends_the_run_after_the_current_page_and_keeps_the_cursor(system: System) -> None:
    with _webhooks_lost(system):
        ids = [system.rep_create_contact(email=f"s{i}@ex.test") for i in range(5)]
    report = engine.reconcile(system.deps, engine.Options(mode="all", batch=2),
                              requeue=lambda p: enqueue_payload(system.deps, p), should_stop=lambda: True)
    assert (report.completed, report.stopped, report.state.counts.contacts) == (False, "asked to stop", 2)
    assert system.conn.get(engine.CURSOR_KEY) is not None and system.conn.get(engine.LOCK_KEY) is None
    assert sum(_state(system, cid) == ("prospect", "new") for cid in ids) == 2


def test_a_page_hubspot_refuses_goes_to_the_queue_and_the_run_goes_on(
        system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    with _webhooks_lost(system):
        ids = [system.rep_create_contact(email=f"p{i}@ex.test") for i in range(4)]
    real = engine.process_inbox
    calls: list[int] = []

    def refuse_first(deps: Any, inbox: Any, **kw: Any) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise HubSpotPermanentError("contacts.batch.update: HubSpot answered 400", status=400)
        return real(deps, inbox, **kw)

    monkeypatch.setattr(engine, "process_inbox", refuse_first)
    result = _reconcile(system, "--all", "--batch", "2")
    assert result.exit_code == 1
    assert "2 failed" in result.stdout.splitlines()[-1]
    assert system.queue.count == 1 and system.conn.get(engine.CURSOR_KEY) is None  # the run completed
    assert sum(_state(system, cid) == ("", "") for cid in ids) == 2
    monkeypatch.setattr(engine, "process_inbox", real)
    system.work()  # the worker finishes the refused page (else it lands in the failed registry for replay)
    assert all(_state(system, cid) == ("prospect", "new") for cid in ids)


def test_a_small_search_cap_splits_windows_and_reaches_every_contact_once(
        system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    with _webhooks_lost(system):
        ids = []
        for i in range(9):
            ids.append(system.rep_create_contact(email=f"w{i}@ex.test"))
            time.sleep(0.003)
    spy = _Spy(monkeypatch)
    result = _reconcile(system, "--since", "1h", "--batch", "2", "--search-cap", "3")
    assert result.exit_code == 0, result.output
    assert sorted(spy.ids) == sorted(ids)  # each once, although every write moves a contact out of its window
    assert all(len(page) <= 2 for page in spy.pages)
    assert json.loads(system.conn.get(engine.LAST_KEY) or b"{}")["splits"] >= 2
    assert all(_state(system, cid) == ("prospect", "new") for cid in ids)


def test_a_second_run_is_refused_while_one_is_running(system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    with _webhooks_lost(system):
        cid = system.rep_create_contact(email="lock@ex.test")
    inside, release = threading.Event(), threading.Event()
    real = engine.process_inbox

    def slow(deps: Any, inbox: Any, **kw: Any) -> dict[str, Any]:
        inside.set()
        assert release.wait(20)
        return real(deps, inbox, **kw)

    monkeypatch.setattr(engine, "process_inbox", slow)
    reports: list[engine.Report] = []
    running = threading.Thread(target=lambda: reports.append(engine.reconcile(
        system.deps, engine.Options(mode="all"), requeue=lambda p: enqueue_payload(system.deps, p))))
    running.start()
    try:
        assert inside.wait(20)
        refused = _reconcile(system, "--all")
        assert refused.exit_code == 1
        assert refused.stderr.startswith("lifecycle reconcile: another reconcile is running")
        assert len(refused.stderr.strip().splitlines()) == 1
    finally:
        release.set()
        running.join(20)
    assert reports and reports[0].ok and _state(system, cid) == ("prospect", "new")
    assert system.conn.get(engine.LOCK_KEY) is None
    assert _reconcile(system, "--all").exit_code == 0


def test_usage_and_config_errors_exit_2_with_one_line(system: System) -> None:
    for args, message in ((["--since", "soon"], "--since: expected a duration"),
                          (["--all", "--since", "1h"], "--since and --all"),
                          (["--batch", "500"], "--batch: must be between 1 and 100"),
                          (["--config", "/nonexistent.yaml"], "/nonexistent.yaml: cannot read")):
        result = _reconcile(system, *args)
        assert result.exit_code == 2, args
        assert result.stderr.startswith(f"lifecycle reconcile: {message}") and result.stderr.count("\n") == 1


def test_every_runs_once_per_interval_and_stops_on_sigterm(system: System) -> None:
    env = {**os.environ, **_env(system), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "reconcile", "--every", "1s"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while system.conn.get(engine.WATERMARK_KEY) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        first = system.conn.get(engine.WATERMARK_KEY)
        while system.conn.get(engine.WATERMARK_KEY) == first and time.monotonic() < deadline:
            time.sleep(0.1)
        assert system.conn.get(engine.WATERMARK_KEY) != first, "a second run should have happened"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert out.count("reconcile: ") >= 2 and "Traceback" not in err
    assert system.conn.get(engine.LOCK_KEY) is None
