"""Acting out stories against the sandbox: reps through the API and the control endpoint,
HubSpot itself (scores) and the email tool, at a bounded rate."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.chaos.stories import Action, Story
from bench.chaos.system import ChaosSystem


def create_companies(system: ChaosSystem, stories: Sequence[Story], run: str) -> dict[int, str]:
    """One HubSpot company per company index the stories use; returns index → company id."""
    ids: dict[int, str] = {}
    for index in sorted({s.company for s in stories if s.company is not None}):
        body = {"properties": {"name": f"Chaos {run} {index}", "domain": f"chaos{index}-{run}.example"}}
        ids[index] = str(system.api("POST", "/crm/v3/objects/companies", "user-1101", json=body)["id"])
    return ids


def perform(system: ChaosSystem, story: Story, action: Action, companies: dict[int, str]) -> None:
    """One action, as the person or system the story says."""
    if action.kind == "create":
        body: dict[str, Any] = {"properties": action.data["properties"]}
        if story.company is not None:
            body["associations"] = [{"to": {"id": companies[story.company]},
                                     "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 1}]}]
        story.cid = str(system.api("POST", "/crm/v3/objects/contacts", f"user-{action.user}", json=body)["id"])
    elif action.kind == "rep":  # a rep in HubSpot's UI (CRM_UI, userId), without spending the API budget
        assert story.cid, "create the contact first"
        body = {"sourceType": "CRM_UI", "sourceId": f"userId:{action.user}", "userId": action.user,
                "properties": action.data}
        system.control("PATCH", f"/_sandbox/objects/contacts/{story.cid}", json=body)
    elif action.kind == "hubspot":  # HubSpot's own calculation (lead score)
        assert story.cid, "create the contact first"
        body = {"sourceType": "CALCULATED", "sourceId": None, "properties": action.data}
        system.control("PATCH", f"/_sandbox/objects/contacts/{story.cid}", json=body)
    elif action.kind == "email":  # HubSpot's email tool: the record, the contact update, the email webhook
        system.control("POST", "/_sandbox/email-events", json=action.data)
    else:
        raise ValueError(action.kind)


def run_phase(system: ChaosSystem, stories: Sequence[Story], phase: int, companies: dict[int, str], *,
              rate_per_s: float, rng: random.Random, threads: int = 2) -> int:
    """Every action of `phase`, contacts interleaved at random (each contact's actions in
    order), at most `rate_per_s` actions per second. Returns the number of actions."""
    queues = {i: [a for a in s.actions if a.phase == phase] for i, s in enumerate(stories)}
    queues = {i: q for i, q in queues.items() if q}
    order: list[int] = []
    remaining = {i: len(q) for i, q in queues.items()}
    while remaining:
        i = rng.choice(list(remaining))
        order.append(i)
        remaining[i] -= 1
        if not remaining[i]:
            del remaining[i]
    # Each contact's actions stay on one lane (thread), so their order holds.
    lanes: list[list[int]] = [[] for _ in range(max(1, threads))]
    lane_of: dict[int, int] = {}
    for i in order:
        lane = lane_of.setdefault(i, rng.randrange(len(lanes)))
        lanes[lane].append(i)
    interval = max(1, threads) / rate_per_s
    positions = {i: 0 for i in queues}
    lock = threading.Lock()

    def lane_run(items: list[int]) -> None:
        next_at = time.monotonic()
        for i in items:
            with lock:
                action = queues[i][positions[i]]
                positions[i] += 1
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            perform(system, stories[i], action, companies)
            next_at += interval

    with ThreadPoolExecutor(max_workers=len(lanes)) as pool:
        for f in [pool.submit(lane_run, lane) for lane in lanes if lane]:
            f.result()
    return len(order)


def run_races(system: ChaosSystem, stories: Sequence[Story], phase: int, companies: dict[int, str], *,
              gap_s: tuple[float, float], rng: random.Random, threads: int = 4,
              start_gap_s: float = 0.15) -> int:
    """Concurrent edits: every contact's actions of `phase` run in their own task, a random
    `gap_s` apart, several contacts at a time, while the workers process what came before."""
    todo = [(s, [a for a in s.actions if a.phase == phase]) for s in stories]
    todo = [(s, acts) for s, acts in todo if acts]
    seeds = [rng.random() for _ in todo]

    def one(story: Story, acts: list[Action], seed: float) -> int:
        local = random.Random(seed)
        for n, action in enumerate(acts):
            if n:
                time.sleep(local.uniform(*gap_s))
            perform(system, story, action, companies)
        return len(acts)

    total = 0
    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = []
        for (story, acts), seed in zip(todo, seeds, strict=True):
            futures.append(pool.submit(one, story, acts, seed))
            time.sleep(start_gap_s)
        for f in futures:
            total += f.result()
    return total


def every(period_s: float, stop: threading.Event, fn: Callable[[], None]) -> threading.Thread:
    """Run `fn` every `period_s` until `stop` is set (a background fault schedule)."""
    def loop() -> None:
        while not stop.wait(period_s):
            fn()
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t
