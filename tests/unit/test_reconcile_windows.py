"""Reconcile's paging, pure: keyset pages inside time windows split under the search cap.

A fake search with HubSpot's filter semantics answers; it orders ties scrambled (HubSpot
promises no order among equal sort values) and refuses `after`, which reconcile never sends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest

from rules.triggers import format_ms
from worker.cli_reconcile import parse_duration
from worker.reconcile import MODIFIED, OBJECT_ID, Counts, Pager, Position, RunState, Window, advance, page_request

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


class FakeSearch:
    """Contacts id -> lastmodifieddate (ms), searched the way HubSpot's CRM search does."""

    def __init__(self, stamps: Mapping[str, int]) -> None:
        self.lmd = dict(stamps)
        self.calls: list[dict[str, Any]] = []
        self.totals: list[int] = []

    def __call__(self, body: Mapping[str, Any]) -> dict[str, Any]:
        assert "after" not in body, "reconcile pages by keyset, never by offset"
        assert body["limit"] <= 200
        self.calls.append(dict(body))
        groups = [g["filters"] for g in body["filterGroups"]]
        assert len(groups) <= 5 and all(len(g) <= 6 for g in groups)
        found = [c for c in self.lmd if any(all(self._hit(c, f) for f in g) for g in groups)]
        by = body["sorts"][0]["propertyName"]
        found.sort(key=lambda c: (self.lmd[c] if by == MODIFIED else int(c), (int(c) * 7919) % 101))
        self.totals.append(len(found))
        return {"total": len(found), "results": [{"id": c, "properties": {MODIFIED: format_ms(self.lmd[c])}}
                                                 for c in found[:body["limit"]]], "paging": None}

    def _hit(self, cid: str, f: Mapping[str, Any]) -> bool:
        mine = self.lmd[cid] if f["propertyName"] == MODIFIED else int(cid)
        if f["operator"] == "NOT_IN":
            assert len(f["values"]) <= 100
            return cid not in f["values"]
        value = int(f["value"])
        return {"EQ": mine == value, "GT": mine > value, "GTE": mine >= value, "LTE": mine <= value}[f["operator"]]


def _portal(stamps: Iterable[int]) -> FakeSearch:
    return FakeSearch({str(1001 + i): T0 + s for i, s in enumerate(stamps)})


def _drain(pager: Pager, on_page: Callable[[list[str]], None] = lambda ids: None) -> list[str]:
    seen: list[str] = []
    for page in pager.pages():
        ids = [str(c["id"]) for c in page]
        seen += ids
        on_page(ids)
    return seen


# many ties: 25 contacts at one instant (more than a page), pairs and singles around it
TIED = [0, 5, 5, 5, *([9] * 25), 12, 12, 20, *range(30, 60, 2), 70, 70, 70, 70]


@pytest.mark.parametrize("batch", [1, 2, 3, 10, 100])
def test_every_contact_once_whatever_the_ties_and_the_page_size(batch: int) -> None:
    search = _portal(TIED)
    pager = Pager(search, [Window(T0, T0 + 100)], batch=batch)
    seen = _drain(pager)
    assert sorted(seen) == sorted(search.lmd) and len(seen) == len(set(seen))
    assert pager.total == len(TIED) and pager.windows == []


def test_own_writes_moving_contacts_out_of_the_window_skip_nobody() -> None:
    # the run writes most contacts of each page: HubSpot moves their lastmodifieddate to "now", past the
    # window; with offset paging the rest of the results would shift down and some be skipped
    search = _portal(TIED)
    original = set(search.lmd)

    def write_back(ids: list[str]) -> None:
        for cid in ids[::2] + ids[-1:]:
            search.lmd[cid] = T0 + 10_000

    seen = _drain(Pager(search, [Window(T0, T0 + 100)], batch=4), write_back)
    assert sorted(seen) == sorted(original) and len(seen) == len(set(seen))


def test_a_small_cap_splits_the_windows_and_still_reaches_every_contact_once() -> None:
    search = _portal(list(range(0, 600, 7)) + [300] * 4)
    pager = Pager(search, [Window(0, T0 + 1000)], batch=5, cap=10)
    seen = _drain(pager)
    assert pager.splits >= 4
    assert sorted(seen) == sorted(search.lmd) and len(seen) == len(set(seen))
    assert pager.total == len(search.lmd)
    # a window that starts over the cap is split: the next window started is its left half
    starts = [(int(c["filterGroups"][0]["filters"][1]["value"]), total)
              for c, total in zip(search.calls, search.totals, strict=True)
              if c["filterGroups"][0]["filters"][0]["operator"] == "GTE"]
    for (hi, total), (next_hi, _) in zip(starts, starts[1:], strict=False):
        if total > 10:
            assert next_hi < hi
    assert max(total for _, total in starts[1:]) > 10 and starts[-1][1] <= 10


def test_the_first_split_starts_at_the_oldest_contact_not_at_zero() -> None:
    search = _portal(range(12))
    pager = Pager(search, [Window(0, T0 + 100)], batch=100, cap=6)
    _drain(pager)
    assert pager.splits < 10  # halving from the epoch would take over 40


@pytest.mark.parametrize("batch", [7, 100])
def test_more_contacts_at_one_instant_than_not_in_can_exclude_are_paged_by_id(batch: int) -> None:
    search = _portal([1] * 3 + [3] * 250 + [4] * 2)
    seen = _drain(Pager(search, [Window(T0, T0 + 10)], batch=batch, cap=5))
    assert sorted(seen) == sorted(search.lmd) and len(seen) == len(set(seen))
    assert any(c["sorts"][0]["propertyName"] == OBJECT_ID for c in search.calls)


def test_one_search_per_page_when_batches_share_an_instant() -> None:
    # a batch create or an import stamps 100 contacts with one lastmodifieddate
    search = _portal([i // 100 for i in range(1000)])
    seen = _drain(Pager(search, [Window(T0, T0 + 100)], batch=100))
    assert sorted(seen) == sorted(search.lmd) and len(search.calls) == 10


def test_resuming_from_a_saved_state_continues_without_repeating() -> None:
    search = _portal(TIED)
    pager = Pager(search, [Window(T0, T0 + 100)], batch=6, cap=8)
    pages = pager.pages()
    first = [str(c["id"]) for c in next(pages)] + [str(c["id"]) for c in next(pages)]
    state = RunState("watermark", T0, T0 + 100, T0, list(pager.windows), pager.pos, total=pager.total,
                     splits=pager.splits, counts=Counts(contacts=len(first), rows={"T1": 2}))
    again = RunState.from_json(state.to_json())
    assert again == state
    rest = _drain(Pager(search, again.windows, again.pos, batch=6, cap=8, total=again.total, splits=again.splits))
    assert sorted(first + rest) == sorted(search.lmd) and not set(first) & set(rest)


def test_page_requests() -> None:
    w = Window(100, 200)
    first = page_request(w, Position(), 50)
    assert first["filterGroups"] == [{"filters": [
        {"propertyName": MODIFIED, "operator": "GTE", "value": "100"},
        {"propertyName": MODIFIED, "operator": "LTE", "value": "200"}]}]
    assert first["sorts"] == [{"propertyName": MODIFIED, "direction": "ASCENDING"}] and first["limit"] == 50
    after = page_request(w, Position(ts=150, seen=("7", "9")), 50)["filterGroups"]
    assert after[0]["filters"] == [{"propertyName": MODIFIED, "operator": "EQ", "value": "150"},
                                   {"propertyName": OBJECT_ID, "operator": "NOT_IN", "values": ["7", "9"]}]
    assert after[1]["filters"][0] == {"propertyName": MODIFIED, "operator": "GT", "value": "150"}
    done = page_request(w, Position(ts=150, ts_done=True), 50)["filterGroups"]
    assert len(done) == 1 and done[0]["filters"][0]["operator"] == "GT"
    tie = page_request(w, Position(ts=150, seen=("7",), after_id=12), 50)
    assert tie["sorts"][0]["propertyName"] == OBJECT_ID
    assert [f["operator"] for f in tie["filterGroups"][0]["filters"]] == ["EQ", "GT", "NOT_IN"]


def _hits(*pairs: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"id": cid, "properties": {MODIFIED: str(ts)}} for cid, ts in pairs]


def test_advance() -> None:
    part = _hits(("1", 5), ("2", 6))
    assert advance(Position(), part, 3) == (part, None)  # a short page ends the window
    full = _hits(("1", 5), ("2", 6), ("3", 6))
    assert advance(Position(), full, 3) == (full, Position(ts=6, seen=("2", "3")))
    assert advance(Position(), full, 3, total=3) == (full, None)  # the total says nothing is left
    flat = _hits(("4", 6), ("5", 6), ("6", 6))
    assert advance(Position(ts=6, seen=("2",)), flat, 3) == (flat, Position(ts=6, seen=("2", "4", "5", "6")))
    many = tuple(str(i) for i in range(100, 199))
    assert advance(Position(ts=6, seen=many), flat, 3) == ([], Position(ts=6, seen=many, after_id=0))
    assert advance(Position(ts=6, after_id=0), flat, 3) == (flat, Position(ts=6, after_id=6))
    assert advance(Position(ts=6, after_id=0), flat, 3, total=3) == (flat, Position(ts=6, ts_done=True))
    assert advance(Position(ts=6, after_id=6), part[:1], 3) == (part[:1], Position(ts=6, ts_done=True))


def test_window_halves_cover_the_window_exactly() -> None:
    left, right = Window(10, 21).halves()
    assert (left.lo, left.hi + 1, right.hi) == (10, right.lo, 21)


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200),
                                               ("1d", 86400), ("1h30m", 5400), ("500ms", 0.5)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2x", "h", "-1h", "0", "1h-"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)
