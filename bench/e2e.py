"""End-to-end benchmark: a burst of mixed events through the whole system, against the minimum
number of HubSpot calls it needs, the throughput the rate limit allows, and a naive baseline.

    python -m bench.e2e [--contacts 2000] [--companies 200] [--events 10000] [--workers 2]
                        [--latency-ms 50] [--rate-limit 100/10s] [--baseline-events 600]
                        [--redis-db 11] [--json PATH] [--coalesce-max-contacts N] [--config FILE]

1. Starts the Procfile's processes as `lifecycle demo` does (worker.demo / worker.procs): the
   sandbox (`--seed none`, the given latency and rate limit), `lifecycle serve`, N x `lifecycle
   worker`, on Redis database `--redis-db` (flushed), then setup-portal.
2. Population, before the clock: companies and contacts (one company each) created with batch
   calls by the app token, already in the state the worker would have left them (its own values:
   prospect/new, or mql/assigned with an owner for the 40 % that sales already works), with
   emails, verticals and scores; every webhook this sends is an echo and is dropped at the door.
3. The burst: per-contact stories (see STORIES) give every event a round; rounds are sent one after
   the other, each as fast as a thread pool can, through the sandbox's control endpoints (reps'
   and HubSpot's changes: not rate limited, not counted) and its email-events endpoint (arrays of
   up to 100 records). A contact has at most one event per round, so its events reach HubSpot in
   story order. Then the system is left to become quiet.
4. The report: events/s end to end, the worker's API calls (sandbox stats delta) by endpoint, calls
   per event, the minimum calls this burst needs (`minimum()`, printed with its formula) and the
   ratio, 429s, lag from a contact's latest event to the write-back (property history), the
   throughput the rate limit allows, the workers' jobs (from their JSON logs), and checks that
   nothing was lost (each story's expected end state, one deal/one MQL task, company rollups).
5. The naive baseline (bench.naive) on the first `--baseline-events` events of the same burst,
   on a freshly reset and re-populated portal: each event is applied the same way (email events
   as the email tool's property changes) and enqueued directly as ONE RQ job shaped as the
   HubSpot webhook event (not through the webhook server), run by N naive workers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from rich.console import Console
from rich.table import Table
from rq import Queue
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from bench import naive
from bench.common import (
    APP_ID,
    REP_USER,
    Sampler,
    System,
    dump_objects,
    integration_writes,
    job_lines,
    list_objects,
    new_log_dir,
    settle,
    start_system,
    wait_delivered,
    write_config,
)
from sandbox.config import parse_rate_limit
from worker.deps import make_deps

console = Console(highlight=False)

SEARCH_PER_S = 5.0  # HubSpot (and the sandbox): 5 searches per second per token, outside the 10 s window
GOALS = {"calls_per_event": 0.1, "ratio_to_minimum": 1.5, "rate_limited": 0, "pct_of_allowed": 80.0}
KINDS = ("score", "delivered", "milestone", "bounce")
CHANGES_PER_REQUEST = 1000  # contacts' property changes per bulk control call
EMAILS_PER_REQUEST = 500  # email events per POST /_sandbox/email-events


# -- the stories -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Story:
    """What happens to one contact in the burst, and where it must end up.

    `reps` are the rep's changes in order (milestone steps, see REP_STEPS). Every step is valid in
    the state the rep sees when it is sent, whether or not the worker has caught up with the
    contact's earlier events (so the expected end state does not depend on timing)."""

    name: str
    segment: str  # population state: "prospect" (prospect/new) or "mql" (mql/assigned, owner set)
    share: float
    reps: tuple[str, ...]
    status: str
    milestone: str
    deals: int = 0
    optout: bool = False
    crosses: bool = False  # its score crosses the threshold in the burst
    bounces: bool = False  # a hard-bounced address (bounces, after at most one delivery)


STORIES: tuple[Story, ...] = (
    Story("crosser", "prospect", 0.15, (), "mql", "assigned", crosses=True),
    Story("nurture", "prospect", 0.12, (), "prospect", "received_campaigns"),
    Story("bouncer", "prospect", 0.08, (), "prospect", "dead", bounces=True),
    Story("qualified", "prospect", 0.09, ("qualified",), "sql", "working", deals=1),
    Story("unqualified_reason", "prospect", 0.06, ("unqualified+reason",), "srl", "unqualified"),
    Story("unqualified_then_reason", "prospect", 0.06, ("unqualified", "unqualified_reason"), "srl", "unqualified"),
    Story("unqualified_no_reason", "prospect", 0.02, ("unqualified",), "prospect", "unqualified"),
    Story("dead_by_rep", "prospect", 0.02, ("dead",), "prospect", "dead", optout=True),
    Story("in_review", "mql", 0.06, ("in_review",), "mql", "in_review"),
    Story("review_then_sales_qualified", "mql", 0.10, ("in_review", "sales_qualified"), "sql", "working", deals=1),
    Story("sales_qualified", "mql", 0.03, ("sales_qualified",), "sql", "working", deals=1),
    Story("review_then_nurture_reason", "mql", 0.06, ("in_review", "return_to_nurture+reason"), "srl",
          "return_to_nurture"),
    Story("nurture_then_reason", "mql", 0.05, ("return_to_nurture", "return_to_nurture_reason"), "srl",
          "return_to_nurture"),
    Story("nurture_no_reason", "mql", 0.015, ("return_to_nurture",), "mql", "return_to_nurture"),
    Story("review_then_unqualified_reason", "mql", 0.04, ("in_review", "unqualified+reason"), "srl", "unqualified"),
    Story("mql_unqualified_then_reason", "mql", 0.02, ("unqualified", "unqualified_reason"), "srl", "unqualified"),
    Story("mql_dead_by_rep", "mql", 0.01, ("in_review", "dead"), "mql", "dead", optout=True),
    Story("mql_idle", "mql", 0.015, (), "mql", "assigned"),
)
# rep step -> (milestone or None, reason of which milestone or None)
REP_STEPS: Mapping[str, tuple[str | None, str | None]] = {
    "in_review": ("in_review", None),
    "qualified": ("qualified", None),
    "sales_qualified": ("sales_qualified", None),
    "dead": ("dead", None),
    "unqualified": ("unqualified", None),
    "unqualified+reason": ("unqualified", "unqualified"),
    "unqualified_reason": (None, "unqualified"),
    "return_to_nurture": ("return_to_nurture", None),
    "return_to_nurture+reason": ("return_to_nurture", "return_to_nurture"),
    "return_to_nurture_reason": (None, "return_to_nurture"),
}
MAX_DELIVERIES, MAX_SCORES, MAX_BOUNCES = 4, 6, 6


@dataclass
class Event:
    seq: int  # global order (round by round)
    contact: int  # contact index
    kind: str  # score | delivered | milestone | bounce
    props: dict[str, str] = field(default_factory=dict)  # score / milestone: what the PATCH sets
    ordinal: int = 0  # delivered / bounce: how many of this kind the contact has had, this one included
    campaign: int = 0
    round: int = 0


@dataclass
class Person:
    index: int
    story: Story
    company: int
    email: str
    firstname: str
    lastname: str
    vertical: str
    score: int
    gmv: str | None
    owner: str | None
    events: list[Event] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "mql" if self.story.segment == "mql" else "prospect"

    @property
    def milestone(self) -> str:
        return "assigned" if self.story.segment == "mql" else "new"


@dataclass
class Plan:
    people: list[Person]
    companies: int
    events: list[Event]  # in send order
    rounds: int

    def members(self) -> dict[int, list[int]]:
        found: dict[int, list[int]] = defaultdict(list)
        for p in self.people:
            found[p.company].append(p.index)
        return found


def _allocate(total: int, shares: Sequence[float]) -> list[int]:
    """Largest-remainder split of `total` by `shares`."""
    raw = [total * s / sum(shares) for s in shares]
    counts = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: -(raw[i] - counts[i]))[: total - sum(counts)]:
        counts[i] += 1
    return counts


def build_plan(settings: Any, contacts: int, companies: int, events: int, seed: int, *,
               stale_bounces: bool = True) -> Plan:
    """People with stories, then the events: the stories' own, filled up to the mix
    (~40 % scores, ~30 % deliveries, ~20 % reps' milestones, ~10 % hard bounces)."""
    rng = random.Random(seed)
    policy = settings.policy
    verticals = sorted(settings.verticals)
    reasons = {m: sorted(opts) for m, opts in policy.reasons.items()}
    stories = [s for s, n in zip(STORIES, _allocate(contacts, [s.share for s in STORIES]), strict=True)
               for _ in range(n)]
    rng.shuffle(stories)
    owner_turn: Counter[str] = Counter()
    people = []
    for i, story in enumerate(stories):
        vertical = verticals[i % len(verticals)]
        owner = None
        if story.segment == "mql":
            owners = settings.verticals[vertical]
            owner = owners[owner_turn[vertical] % len(owners)]
            owner_turn[vertical] += 1
        people.append(Person(
            index=i, story=story, company=i % companies, email=f"contact{i}@company{i % companies}.example",
            firstname=f"First{i}", lastname=f"Last{i}", vertical=vertical,
            score=rng.randint(100, 140) if story.segment == "mql" else rng.randint(5, 60),
            gmv=rng.choice(["25000", "50000", "120000"]) if rng.random() < 0.4 else None, owner=owner))

    # how many of each kind every person gets: the stories' own first, then filler up to the mix
    n_rep = sum(len(p.story.reps) for p in people)
    want_bounce, want_deliv = round(events * 0.10), round(events * 0.30)
    want_score = events - n_rep - want_bounce - want_deliv
    scores = Counter({p.index: 1 for p in people if p.story.crosses})
    deliv = Counter({p.index: 1 for p in people if p.story.name == "nurture"})
    bounce = Counter({p.index: 1 for p in people if p.story.bounces})
    # a stale bounce: the address bounced before the rep acted (the rep's later change must win)
    stale_ok = [p.index for p in people if p.story.reps and not p.story.optout] if stale_bounces else []

    def fill(counter: Counter[int], want: int, slots: list[int]) -> None:
        free = [i for i in slots]
        rng.shuffle(free)
        for i in free:
            if sum(counter.values()) >= want:
                return
            counter[i] += 1

    fill(bounce, want_bounce, [p.index for p in people if p.story.bounces] * (MAX_BOUNCES - 1) + stale_ok)
    fill(deliv, want_deliv, [i for p in people for i in [p.index] * (1 if p.story.bounces else MAX_DELIVERIES)])
    fill(scores, want_score, [p.index for p in people] * MAX_SCORES)
    if min(want_score, want_deliv, want_bounce) < 0 or sum(scores.values()) < want_score:
        raise SystemExit(f"--events {events} is too few or too many for --contacts {contacts}: use about 5 per contact")

    # each person's events in story order
    sequences: list[list[Event]] = []
    for p in people:
        story = p.story
        others = ["score"] * scores[p.index] + ["delivered"] * deliv[p.index]
        rng.shuffle(others)
        if story.bounces:  # at most one delivery, then the address bounces on every later campaign
            first = ["delivered"] * deliv[p.index]
            seq = first + _interleave(rng, ["bounce"] * bounce[p.index], ["score"] * scores[p.index])
        elif story.reps and bounce[p.index]:  # earlier campaigns delivered, the address bounces, then the rep acts
            seq = (["delivered"] * deliv[p.index] + ["bounce"] * bounce[p.index]
                   + _interleave(rng, list(story.reps), ["score"] * scores[p.index]))
        elif story.reps:
            seq = _interleave(rng, list(story.reps), others)
        else:
            seq = others
        sequences.append(_events(rng, p, seq, policy, reasons))
    rounds = max((len(s) for s in sequences), default=1)
    for evs in sequences:
        for ev, r in zip(evs, sorted(rng.sample(range(rounds), len(evs))), strict=True):
            ev.round = r
    by_round: dict[int, list[Event]] = defaultdict(list)
    for evs in sequences:
        for ev in evs:
            by_round[ev.round].append(ev)
    ordered: list[Event] = []
    for r in range(rounds):
        batch = by_round[r]
        rng.shuffle(batch)
        for ev in batch:
            ev.seq = len(ordered)
            ev.campaign = 9000 + r
            ordered.append(ev)
    for p, evs in zip(people, sequences, strict=True):
        p.events = evs
    return Plan(people, companies, ordered, rounds)


def _interleave(rng: random.Random, fixed: list[str], others: list[str]) -> list[str]:
    """`fixed` in its order with `others` at random places."""
    slots = sorted(rng.sample(range(len(fixed) + len(others)), len(fixed)))
    out, f, o = [], iter(fixed), iter(others)
    for i in range(len(fixed) + len(others)):
        out.append(next(f) if i in slots else next(o))
    return out


def _events(rng: random.Random, p: Person, seq: list[str], policy: Any, reasons: Mapping[str, list[str]]
            ) -> list[Event]:
    out: list[Event] = []
    score = p.score
    n_scores = seq.count("score")
    cross_at = rng.randrange(n_scores) if p.story.crosses and n_scores else -1
    seen_scores = 0
    count: Counter[str] = Counter()
    threshold = int(policy.score_threshold)
    for kind in seq:
        if kind == "score":
            if p.story.segment == "mql":
                value = rng.choice([v for v in range(60, 151) if v != score])
            elif p.story.crosses and seen_scores >= cross_at:
                value = rng.choice([v for v in range(threshold, threshold + 40) if v != score])
            else:
                value = rng.choice([v for v in range(max(5, min(score, threshold - 10) - 5), threshold) if v != score])
            seen_scores += 1
            score = value
            out.append(Event(0, p.index, "score", {policy.score_property: str(value)}))
        elif kind in ("delivered", "bounce"):
            count[kind] += 1
            out.append(Event(0, p.index, kind, ordinal=count[kind]))
        else:
            milestone, reason_of = REP_STEPS[kind]
            props = {}
            if milestone:
                props[policy.contact.milestone] = milestone
            if reason_of:
                props[policy.contact.reason] = rng.choice(reasons[reason_of])
            out.append(Event(0, p.index, "milestone", props))
    return out


# -- population ----------------------------------------------------------------------------------------
def populate(system: System, plan: Plan, limiter: Any) -> dict[int, str]:
    """Companies and contacts (with their company association) in batch calls by the app token, each
    call through the worker's Redis limiter. Returns contact index -> HubSpot id."""
    s = system.settings
    p, co = s.policy.contact, s.policy.company
    portal = system.portal
    ago = str(int(time.time() * 1000) - 30 * 86_400_000)
    rank = {st.value: st.rank for st in s.policy.statuses}
    top: dict[int, str] = {}
    for person in plan.people:
        if rank[person.status] > rank.get(top.get(person.company, ""), 0):
            top[person.company] = person.status

    def call(path: str, body: dict[str, Any]) -> Any:
        limiter.acquire()
        return portal.call("POST", path, system.app_token, json=body)

    company_ids: dict[int, str] = {}
    for start in range(0, plan.companies, 100):
        idx = list(range(start, min(start + 100, plan.companies)))
        inputs = [{"properties": {co.name: f"Company {k}", "domain": f"company{k}.example",
                                  co.account_status: top.get(k, "prospect")}} for k in idx]
        answer = call("/crm/v3/objects/companies/batch/create", {"inputs": inputs})
        by_name = {r["properties"]["name"]: r["id"] for r in answer["results"]}
        company_ids.update({k: str(by_name[f"Company {k}"]) for k in idx})
    contact_ids: dict[int, str] = {}
    for start in range(0, len(plan.people), 100):
        chunk = plan.people[start:start + 100]
        inputs = []
        for person in chunk:
            props = {p.email: person.email, p.first_name: person.firstname, p.last_name: person.lastname,
                     p.vertical: person.vertical, s.policy.score_property: str(person.score),
                     p.status: person.status, p.milestone: person.milestone,
                     p.status_changed_at: ago, p.milestone_changed_at: ago}
            if person.gmv:
                props[p.gmv_forecast] = person.gmv
            if person.owner:
                props[p.owner] = person.owner
            inputs.append({"properties": props, "associations": [
                {"to": {"id": company_ids[person.company]},
                 "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 1}]}]})
        answer = call("/crm/v3/objects/contacts/batch/create", {"inputs": inputs})
        by_email = {r["properties"]["email"]: str(r["id"]) for r in answer["results"]}
        contact_ids.update({person.index: by_email[person.email] for person in chunk})
    return contact_ids


def wait_for_window(rate: Any, calls_so_far: int, last_call: float) -> None:
    """Let the sandbox's rolling window forget setup and population, so the burst starts on an idle portal."""
    if rate is None or calls_so_far <= 0.1 * rate.limit:
        return
    time.sleep(max(0.0, last_call + rate.window_s + 0.2 - time.time()))


# -- sending -------------------------------------------------------------------------------------------
class Sender:
    """Sends the burst round by round with a thread pool; remembers each contact's latest event time."""

    def __init__(self, system: System, ids: Mapping[int, str], plan: Plan, threads: int, *,
                 naive_queue: Queue | None = None) -> None:
        self.system, self.ids, self.plan, self.threads = system, ids, plan, threads
        self.naive_queue = naive_queue
        self.latest: dict[int, float] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self.requests = 0

    def _http(self) -> requests.Session:
        s = getattr(self._local, "s", None)
        if s is None:
            s = self._local.s = requests.Session()
        return s

    def _mark(self, contacts: Iterable[int], at: float) -> None:
        with self._lock:
            self.requests += 1
            for c in contacts:
                if at > self.latest.get(c, 0.0):
                    self.latest[c] = at

    def send(self, events: Sequence[Event]) -> tuple[float, float]:
        """(time of the first send, time the last send returned)."""
        rounds: dict[int, list[Event]] = defaultdict(list)
        for ev in events:
            rounds[ev.round].append(ev)
        first = time.time()
        with ThreadPoolExecutor(self.threads, thread_name_prefix="bench-sender") as pool:
            for r in sorted(rounds):
                tasks = self._tasks(rounds[r])
                list(pool.map(lambda task: task(), tasks))
        return first, time.time()

    def _tasks(self, events: list[Event]) -> list[Callable[[], None]]:
        tasks: list[Callable[[], None]] = []
        if self.naive_queue is not None:
            return [lambda ev=ev: self._naive(ev) for ev in events]
        emails = [ev for ev in events if ev.kind in ("delivered", "bounce")]
        for start in range(0, len(emails), EMAILS_PER_REQUEST):
            tasks.append(lambda chunk=emails[start:start + EMAILS_PER_REQUEST]: self._emails(chunk))
        for kind in ("score", "milestone"):  # one change source each: one bulk control call per round
            same = [ev for ev in events if ev.kind == kind]
            for start in range(0, len(same), CHANGES_PER_REQUEST):
                tasks.append(lambda chunk=same[start:start + CHANGES_PER_REQUEST]: self._bulk(chunk))
        random.Random(len(events)).shuffle(tasks)
        return tasks

    def _bulk(self, chunk: list[Event]) -> None:
        """Many contacts' changes by one source in one call (`POST /_sandbox/objects/contacts/batch/update`),
        firing the webhooks HubSpot would: a round goes out at once instead of one request per contact."""
        at = time.time()
        source = self._patch_body(chunk[0], int(at * 1000))
        body = {k: v for k, v in source.items() if k != "properties"}
        body["inputs"] = [{"id": self.ids[ev.contact], "properties": ev.props} for ev in chunk]
        r = self._http().post(f"{self.system.base}/_sandbox/objects/contacts/batch/update", json=body, timeout=120)
        r.raise_for_status()
        if r.json().get("missing"):
            raise RuntimeError(f"the sandbox has no contacts {r.json()['missing'][:5]}")
        self._mark([ev.contact for ev in chunk], at)

    def _patch_body(self, ev: Event, now_ms: int) -> dict[str, Any]:
        if ev.kind == "score":
            return {"sourceType": "CALCULATED", "properties": ev.props}
        if ev.kind == "milestone":
            return {"sourceType": "CRM_UI", "sourceId": f"userId:{REP_USER}", "userId": REP_USER,
                    "properties": ev.props}
        if ev.kind == "delivered":  # what HubSpot's email tool changes (the naive baseline's way in)
            props = {"hs_email_delivered": str(ev.ordinal), "hs_email_last_send_date": str(now_ms)}
        else:
            props = {"hs_email_hard_bounce_reason_enum": "UNKNOWN_USER", "hs_email_bounce": str(ev.ordinal),
                     "hs_email_bad_address": "true"}
        return {"sourceType": "EMAIL", "properties": props}

    def _patch(self, ev: Event) -> dict[str, Any]:
        at = time.time()
        body = self._patch_body(ev, int(at * 1000))
        cid = self.ids[ev.contact]
        r = self._http().patch(f"{self.system.base}/_sandbox/objects/contacts/{cid}", json=body, timeout=60)
        r.raise_for_status()
        self._mark([ev.contact], at)
        return body

    def _emails(self, chunk: list[Event]) -> None:
        records = []
        for ev in chunk:
            person = self.plan.people[ev.contact]
            record: dict[str, Any] = {"type": "DELIVERED" if ev.kind == "delivered" else "BOUNCE",
                                      "recipient": person.email, "emailCampaignId": ev.campaign}
            if ev.kind == "bounce":
                record["category"] = "HARD_BOUNCE"
            records.append(record)
        at = time.time()
        r = self._http().post(f"{self.system.base}/_sandbox/email-events", json=records, timeout=60)
        r.raise_for_status()
        self._mark([ev.contact for ev in chunk], at)

    def _naive(self, ev: Event) -> None:
        """Apply the change, then enqueue ONE job with the webhook event HubSpot would send for it."""
        assert self.naive_queue is not None
        body = self._patch(ev)
        props = body["properties"]
        policy = self.system.settings.policy
        name = {"score": policy.score_property, "delivered": "hs_email_delivered",
                "bounce": "hs_email_hard_bounce_reason_enum"}.get(ev.kind)
        if name is None:
            name = policy.contact.milestone if policy.contact.milestone in props else policy.contact.reason
        raw = {"eventId": ev.seq + 1, "subscriptionId": 1000 + KINDS.index(ev.kind), "portalId":
               self.system.settings.portal_id, "appId": int(APP_ID), "occurredAt": int(time.time() * 1000),
               "subscriptionType": "contact.propertyChange", "attemptNumber": 0, "objectId": int(self.ids[ev.contact]),
               "changeFlag": "UPDATED", "changeSource": body["sourceType"], "sourceId": body.get("sourceId"),
               "propertyName": name, "propertyValue": props[name]}
        self.naive_queue.enqueue(naive.JOB_FUNC, raw, job_timeout=300, result_ttl=0, failure_ttl=86400)


# -- measuring -----------------------------------------------------------------------------------------
def _ceil(n: int, per: int) -> int:
    return math.ceil(n / per) if n > 0 else 0


def minimum(*, touched: set[int], written: set[int], recipients: set[str], status_changed: set[int],
            company_of: Mapping[int, int], members: Mapping[int, list[int]], companies_changed: set[int],
            tasks: int, deals: int, deal_contacts: int, unsubscribed: int) -> dict[str, Any]:
    """The fewest HubSpot calls that do what this burst needed, if every event were known at once."""
    companies = {company_of[c] for c in status_changed}
    untouched = {m for co in companies for m in members[co]} - touched
    parts = {
        "contact reads": (_ceil(len(touched), 100), f"ceil({len(touched)} contacts touched / 100)"),
        "contact writes": (_ceil(len(written), 100), f"ceil({len(written)} contacts written / 100)"),
        "email lookups (search)": (_ceil(len(recipients), 100),
                                   f"ceil({len(recipients)} recipients with no event by id / 100)"),
        "rollup contact->company reads": (_ceil(len(status_changed), 1000),
                                          f"ceil({len(status_changed)} contacts whose status changed / 1000)"),
        "rollup company->contact reads": (_ceil(len(companies), 1000),
                                          f"ceil({len(companies)} their companies / 1000)"),
        "rollup company reads": (_ceil(len(companies), 100), f"ceil({len(companies)} companies / 100)"),
        "rollup member reads": (_ceil(len(untouched), 100),
                                f"ceil({len(untouched)} member contacts not touched / 100)"),
        "rollup company writes": (_ceil(len(companies_changed), 100),
                                  f"ceil({len(companies_changed)} companies changed / 100)"),
        "task creates": (_ceil(tasks, 100), f"ceil({tasks} tasks / 100)"),
        "deal contact->deal reads": (_ceil(deal_contacts, 1000),
                                     f"ceil({deal_contacts} contacts getting a deal / 1000)"),
        "deal creates": (_ceil(deals, 100), f"ceil({deals} deals / 100)"),
        "unsubscribes": (_ceil(unsubscribed, 100),
                         f"ceil({unsubscribed} addresses / 100) (v4 batch unsubscribe-all, hubspot-facts §5)"),
    }
    total = sum(v for v, _ in parts.values())
    searches = parts["email lookups (search)"][0]
    return {"total": total, "general": total - searches, "search": searches,
            "parts": {k: {"calls": v, "formula": f} for k, (v, f) in parts.items()}}


def _pct(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


@dataclass
class PhaseResult:
    name: str
    events: int
    events_by_kind: dict[str, int]
    wall_s: float
    send_s: float
    events_per_s: float
    api_calls: int
    calls_by_endpoint: dict[str, int]
    calls_per_event: float
    minimum: dict[str, Any]
    ratio_to_minimum: float | None
    rate_limited: int
    lag_ms: dict[str, Any]
    allowed: dict[str, Any]
    pct_of_allowed: float | None
    sender_events_per_s: float  # how fast this box could send the burst: an end-to-end ceiling of its own
    pct_of_reachable: float | None  # events/s as % of min(allowed, sender ceiling, ingest ceiling)
    jobs: dict[str, Any]
    failed_jobs: int
    delivered_s: float | None = None  # first send -> every webhook of the burst answered by the web server
    ingest_events_per_s: float | None = None  # events / delivered_s: the webhook path's ceiling on this box
    checks: dict[str, Any] = field(default_factory=dict)
    lost: int | None = None  # distinct contacts + companies + duplicated task keys that fail a check
    lost_detail: dict[str, Any] = field(default_factory=dict)
    failed_contacts: dict[str, Any] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)


def _allowed(rate: Any, minimum_: Mapping[str, Any], events: int) -> dict[str, Any]:
    """Events/s the rate limit allows for this burst: the tighter of the 10 s window (non-search calls)
    and the 5/s search limit, each divided by the minimum calls per event of its kind."""
    out: dict[str, Any] = {}
    if rate is None:
        return {"events_per_s": None, "formula": "no rate limit"}
    per_s = rate.limit / rate.window_s
    general = minimum_["general"] / events if events else 0
    search = minimum_["search"] / events if events else 0
    bounds = {}
    if general:
        bounds["window"] = per_s / general
    if search:
        bounds["search"] = SEARCH_PER_S / search
    out["events_per_s"] = min(bounds.values()) if bounds else None
    out["bounds"] = bounds
    out["formula"] = (f"min({per_s:g} calls/s / ({minimum_['general']} / {events}) non-search calls per event, "
                      f"{SEARCH_PER_S:g} searches/s / ({minimum_['search']} / {events}) searches per event)")
    return out


def measure(system: System, plan: Plan, ids: Mapping[int, str], events: Sequence[Event], *, name: str,
            first: float, last_sent: float, quiet: float, stats0: Mapping[str, Any], stats1: Mapping[str, Any],
            delivered: float | None = None,
            latest: Mapping[int, float], rate: Any, queue: str, log_prefix: str, check: bool,
            timeline: list[dict[str, Any]]) -> PhaseResult:
    base = system.base
    since_ms = first * 1000
    calls = {k: v - stats0["calls"].get(k, 0) for k, v in stats1["calls"].items()
             if v - stats0["calls"].get(k, 0) > 0}
    total = sum(calls.values())
    contacts = dump_objects(base, "contacts", ids.values())
    by_id = {cid: i for i, cid in ids.items()}
    companies_list = list_objects(base, "companies")
    company_dumps = dump_objects(base, "companies", [str(c["id"]) for c in companies_list])
    tasks = list_objects(base, "tasks")
    deals_list = list_objects(base, "deals")

    touched = {ev.contact for ev in events}
    writes = {by_id[cid]: integration_writes(obj, APP_ID, since_ms) for cid, obj in contacts.items()}
    written = {i for i, w in writes.items() if w}
    s = system.settings
    p = s.policy.contact
    status_changed = {i for i, w in writes.items() if p.status in w}
    unsubscribed = {i for i, w in writes.items() if "hs_email_optout" in w}
    companies_changed = {c for c, obj in company_dumps.items()
                         if integration_writes(obj, APP_ID, since_ms).get(s.policy.company.account_status)}
    deal_contacts = {by_id[cid] for cid, obj in contacts.items() if (obj.get("associations") or {}).get("deals")}
    # An address needs a lookup only when its contact has no event by id: the contacts read for
    # their own events carry their `email`, which resolves the email events (worker/gather.py).
    named = {ev.contact for ev in events if ev.kind in ("score", "milestone")}
    recipients = {plan.people[ev.contact].email for ev in events
                  if ev.kind in ("delivered", "bounce") and ev.contact not in named}
    if name == "naive":
        recipients = set()  # the baseline's email events arrive as property changes naming the contact
    minimum_ = minimum(touched=touched, written=written, recipients=recipients, status_changed=status_changed,
                       company_of={pp.index: pp.company for pp in plan.people}, members=plan.members(),
                       companies_changed=companies_changed, tasks=len(tasks), deals=len(deals_list),
                       deal_contacts=len(deal_contacts), unsubscribed=len(unsubscribed))
    lags, excluded = [], 0
    for i, at in latest.items():
        newest = max((t for ts in writes.get(i, {}).values() for t in ts), default=None)
        if newest is None or newest < at * 1000:
            excluded += 1  # its last event changed nothing (or was lost: see the checks)
        else:
            lags.append(newest - at * 1000)
    wall = quiet - first
    n = len(events)
    allowed = _allowed(rate, minimum_, n)
    eps = n / wall if wall > 0 else 0.0
    sender = n / (last_sent - first) if last_sent > first else 0.0
    ingest = n / (delivered - first) if delivered and delivered > first else None
    ceilings = [x for x in (allowed.get("events_per_s"), sender, ingest) if x]
    reachable = min(ceilings) if ceilings else None
    jobs = _jobs(system.logs, log_prefix, first) if name != "naive" else {"jobs": n, "note": "one job per event"}
    failed = FailedJobRegistry(queue, connection=system.conn, serializer=JSONSerializer).count
    result = PhaseResult(
        name=name, events=n, events_by_kind=dict(Counter(ev.kind for ev in events)), wall_s=round(wall, 2),
        send_s=round(last_sent - first, 2), events_per_s=round(eps, 1), api_calls=total,
        calls_by_endpoint=dict(sorted(calls.items(), key=lambda kv: -kv[1])),
        calls_per_event=round(total / n, 4) if n else 0.0, minimum=minimum_,
        ratio_to_minimum=round(total / minimum_["total"], 2) if minimum_["total"] else None,
        rate_limited=stats1["rate_limited"] - stats0["rate_limited"],
        lag_ms={"p50": _round(_pct(lags, 50)), "p99": _round(_pct(lags, 99)), "max": _round(max(lags, default=None)),
                "contacts": len(lags), "excluded": excluded},
        allowed=allowed,
        pct_of_allowed=round(100 * eps / allowed["events_per_s"], 1) if allowed.get("events_per_s") else None,
        sender_events_per_s=round(sender, 1),
        pct_of_reachable=round(100 * eps / reachable, 1) if reachable else None,
        jobs=jobs, failed_jobs=failed, timeline=timeline,
        delivered_s=round(delivered - first, 2) if delivered else None,
        ingest_events_per_s=round(ingest, 1) if ingest else None)
    if check:
        result.checks = checks(system, plan, ids, contacts, company_dumps, tasks)
        result.failed_contacts = result.checks.pop("_failed_contacts", {})
        result.lost_detail = result.checks.pop("_lost")
        result.lost = result.lost_detail["total"]
    return result


def _round(v: float | None) -> float | None:
    return None if v is None else round(v)


def _jobs(log_dir: str, prefix: str, since: float) -> dict[str, Any]:
    rows = job_lines(log_dir, prefix, since)
    if not rows:
        return {"jobs": 0}
    sizes = [int(r.get("contacts", 0)) for r in rows]
    retry_lines = job_lines(log_dir, prefix, since, "hubspot_retry")
    retries = Counter(f"{r.get('endpoint')} {r.get('status')}" for r in retry_lines)
    return {"jobs": len(rows), "absorbed": sum(int(r.get("absorbed", 0)) for r in rows),
            "contacts_per_job": {"mean": round(sum(sizes) / len(sizes), 1), "p50": _pct(sizes, 50),
                                 "max": max(sizes)},
            "contact_visits": sum(sizes),
            **{k: sum(int(r.get(k, 0) or 0) for r in rows)
               for k in ("written", "noop", "deferred", "skipped", "owners_assigned", "tasks_created",
                         "deals_created", "unsubscribed")},
            "retries": dict(retries)}


CAUSE_STALE_BOUNCE = "stale bounce made the rep's milestone dead (T4 trusted an old stamp)"
CAUSE_RACE = "rep's change overwritten by a worker write decided before it (read-modify-write race)"
CAUSE_OTHER = "other"


def checks(system: System, plan: Plan, ids: Mapping[int, str], contacts: Mapping[str, dict[str, Any]],
           companies: Mapping[str, dict[str, Any]], tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """Nothing lost: every story's end state, one deal / one MQL task each, optouts, company rollups.

    Returns the checks, plus `_lost` (distinct contacts, companies and task keys that fail) with each
    lost contact's likely cause read from its milestone history, and `_failed_contacts` (dumps)."""
    s = system.settings
    p = s.policy.contact
    out: dict[str, dict[str, Any]] = {}
    failed: dict[str, Any] = {}
    lost_contacts: dict[str, str] = {}  # contact id -> cause
    by_id = {cid: i for i, cid in ids.items()}

    def record(name: str, ok: bool, example: str, cid: str | None = None, end_state: bool = False) -> None:
        c = out.setdefault(name, {"checked": 0, "failed": 0, "examples": []})
        c["checked"] += 1
        if ok:
            return
        c["failed"] += 1
        if len(c["examples"]) < 5:
            c["examples"].append(example)
        if cid is None:
            return
        person = plan.people[by_id[cid]]
        if end_state or cid not in lost_contacts:
            lost_contacts[cid] = _cause(person, contacts[cid], p.milestone) if end_state else CAUSE_OTHER
        if len(failed) < 10 and cid not in failed:
            failed[cid] = _story_dump(plan, by_id[cid], contacts[cid])

    task_keys = Counter()
    for t in tasks:
        body = (t.get("properties") or {}).get("hs_task_body") or ""
        if "[lifecycle " in body:
            task_keys[body.rsplit("[lifecycle ", 1)[1].rstrip("]")] += 1
    final_status: dict[int, str | None] = {}
    for person in plan.people:
        obj = contacts[ids[person.index]]
        props = obj["properties"]
        status, milestone = props.get(p.status), props.get(p.milestone)
        final_status[person.index] = status
        story = person.story
        want = (story.status, story.milestone)
        if story.name == "nurture" and not any(ev.kind == "delivered" for ev in person.events):
            want = ("prospect", "new")
        cid = ids[person.index]
        # the end state first: a lost contact's cause is read from it
        record(f"end state: {story.name}", (status, milestone) == want,
               f"contact {cid}: {status}/{milestone}, expected {want[0]}/{want[1]}", cid, end_state=True)
        deals = len((obj.get("associations") or {}).get("deals") or {})
        record("deals: exactly the expected number", deals == story.deals,
               f"contact {cid} ({story.name}): {deals} deals, expected {story.deals}", cid)
        if story.crosses:
            record("crossed 100: owner assigned", bool(props.get(p.owner)), f"contact {cid}: no owner", cid)
            record("crossed 100: one New MQL task", task_keys.get(f"new_mql:{cid}:once", 0) == 1,
                   f"contact {cid}: {task_keys.get(f'new_mql:{cid}:once', 0)} New MQL tasks", cid)
        if story.optout:
            record("dead by a rep: unsubscribed", props.get("hs_email_optout") == "true",
                   f"contact {cid}: hs_email_optout={props.get('hs_email_optout')}", cid)
    duplicates = {k: n for k, n in task_keys.items() if n > 1}
    out["tasks: no duplicate (same lifecycle key twice)"] = {
        "checked": len(task_keys), "failed": len(duplicates), "examples": list(duplicates)[:5]}
    rank = {st.value: st.rank for st in s.policy.statuses}
    company_ids = {}
    for person in plan.people:
        assoc = (contacts[ids[person.index]].get("associations") or {}).get("companies") or {}
        for co in assoc:
            company_ids[person.company] = co
    for k, members in plan.members().items():
        co = company_ids.get(k)
        if co is None:
            continue
        top = max((final_status[i] for i in members if final_status[i] in rank), key=lambda v: rank[v], default=None)
        got = companies[co]["properties"].get(s.policy.company.account_status)
        record("company account_status = highest member status", got == top,
               f"company {co}: account_status {got}, members' highest {top}")
    by_cause = Counter(lost_contacts.values())
    companies_wrong = out["company account_status = highest member status"]["failed"]
    out["_lost"] = {"contacts": len(lost_contacts), "by_cause": dict(by_cause), "companies": companies_wrong,
                    "duplicate_tasks": len(duplicates),
                    "total": len(lost_contacts) + companies_wrong + len(duplicates)}  # type: ignore[dict-item]
    if failed:
        out["_failed_contacts"] = failed  # type: ignore[assignment]
    return out


def _cause(person: Person, obj: Mapping[str, Any], milestone_prop: str) -> str:
    """Why a contact did not end where its story says, from its milestone history (newest first):
    the worker wrote the milestone after the rep's last change, with a value that does not follow
    from it (the stories' reps only set milestones the rows keep, or move on to `working`)."""
    history = (obj.get("propertiesWithHistory") or {}).get(milestone_prop) or []
    by_person = [i for i, e in enumerate(history) if e.get("sourceType") != "INTEGRATION"]
    if not person.story.reps or not by_person:
        return CAUSE_OTHER
    after = [e.get("value") for e in history[: by_person[0]]]
    if "dead" in after and any(ev.kind == "bounce" for ev in person.events):
        return CAUSE_STALE_BOUNCE
    if any(v != "working" for v in after):
        return CAUSE_RACE
    return CAUSE_OTHER


def _story_dump(plan: Plan, index: int, obj: Mapping[str, Any]) -> dict[str, Any]:
    """A failed contact: its story, the events sent, and its lifecycle properties' history."""
    person = plan.people[index]
    keep = ("contact_status", "contact_milestone", "milestone_reason", "contact_milestone_changed_at",
            "hs_email_hard_bounce_reason_enum", "hubspotscore", "hs_email_delivered", "hs_email_optout")
    return {"story": person.story.name,
            "events": [{"seq": ev.seq, "round": ev.round, "kind": ev.kind, **ev.props} for ev in person.events],
            "history": {k: v for k, v in (obj.get("propertiesWithHistory") or {}).items() if k in keep}}


# -- the run ---------------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> dict[str, Any]:
    from tools.redis_runtime import answers

    redis_url = args.redis_url or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    if not answers(redis_url):
        raise SystemExit(f"no Redis answers at {redis_url}; `make bench-e2e` starts one for you")
    rate = parse_rate_limit(args.rate_limit)
    logs = new_log_dir()
    config = write_config(args.config, rate_limit=(rate.limit, rate.window_s) if rate else None,
                          coalesce_max_contacts=args.coalesce_max_contacts, directory=logs)
    started = time.monotonic()
    console.print(f"Logs in {logs}" + (f"; config {config}" if config else ""))
    system = start_system(redis_url, args.redis_db, workers=args.workers, latency_ms=args.latency_ms,
                          rate_limit=args.rate_limit, config=config, log_dir=logs)
    try:
        deps = make_deps(system.settings, system.conn)
        plan = build_plan(system.settings, args.contacts, args.companies, args.events, args.seed,
                          stale_bounces=not args.no_stale_bounces)
        console.print(f"Plan: {len(plan.people)} contacts, {plan.companies} companies, {len(plan.events)} events "
                      f"in {plan.rounds} rounds; {dict(Counter(ev.kind for ev in plan.events))}")
        ours = phase_ours(system, plan, deps, rate, args)
        baseline = None
        if args.baseline_events:
            baseline = phase_naive(system, plan, deps, rate, args)
    finally:
        system.stop()
    report = {
        "command": "python -m bench.e2e " + " ".join(args.argv),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared with other test runs)",
        "params": {k: v for k, v in vars(args).items() if k != "argv"},
        "config": config or "config.yaml",
        "code": _code_version(),
        "logs": logs,
        "ours": asdict(ours),
        "naive": asdict(baseline) if baseline else None,
        "ratios": _ratios(ours, baseline),
        "goals": _goals(ours),
        "took_s": round(time.monotonic() - started, 1),
    }
    return report


def phase_ours(system: System, plan: Plan, deps: Any, rate: Any, args: argparse.Namespace) -> PhaseResult:
    queue = system.settings.worker.queue
    with console.status("Populating the portal…"):
        ids = populate(system, plan, deps.limiter)
        last_call = time.time()
        settle(system.conn, [queue], system.portal, timeout_s=120)
        wait_for_window(rate, system.portal.control("stats")["total_calls"], last_call)
    stats0 = system.portal.control("stats")
    console.print(f"[green]✓[/] Population: {len(ids)} contacts, {plan.companies} companies "
                  f"({stats0['total_calls']} API calls with setup-portal)")
    sender = Sender(system, ids, plan, args.senders)
    sampler = Sampler(system.conn, [queue], system.portal).start()
    with console.status(f"Burst: {len(plan.events)} events…"):
        first, last_sent = sender.send(plan.events)
        delivered = wait_delivered(system.portal, timeout_s=args.timeout)
    console.print(f"[green]✓[/] Burst sent in {last_sent - first:.1f} s ({sender.requests} requests), its webhooks "
                  f"delivered {delivered - first:.1f} s after the first event")
    with console.status("Waiting for the workers to catch up…"):
        quiet = settle(system.conn, [queue], system.portal, timeout_s=args.timeout)
    timeline = sampler.stop()
    stats1 = system.portal.control("stats")
    console.print(f"[green]✓[/] Quiet {quiet - first:.1f} s after the first event")
    with console.status("Reading the portal back…"):
        return measure(system, plan, ids, plan.events, name="ours", first=first, last_sent=last_sent, quiet=quiet,
                       delivered=delivered, stats0=stats0, stats1=stats1, latest=sender.latest, rate=rate, queue=queue,
                       log_prefix="worker", check=True, timeline=timeline)


def phase_naive(system: System, plan: Plan, deps: Any, rate: Any, args: argparse.Namespace) -> PhaseResult:
    portal = system.portal
    with console.status("Naive baseline: resetting and re-populating the portal…"):
        portal.http.post(f"{system.base}/_sandbox/reset", timeout=30).raise_for_status()
        portal.http.post(f"{system.base}/_sandbox/webhooks/pause", timeout=30).raise_for_status()
        for pattern in ("lc:effect:*", "lc:owner:*", "lc:rr:*", "lc:lock:*"):
            keys = list(system.conn.scan_iter(pattern, count=1000))
            for start in range(0, len(keys), 500):
                system.conn.delete(*keys[start:start + 500])
        for i in range(system.workers):
            system.children.start_module(f"naive{i + 1}", "bench.naive", "worker")
        system.setup_portal()
        ids = populate(system, plan, deps.limiter)
        last_call = time.time()
        wait_for_window(rate, portal.control("stats")["total_calls"], last_call)
    events = plan.events[: args.baseline_events]
    stats0 = portal.control("stats")
    q = Queue(naive.QUEUE, connection=system.conn, serializer=JSONSerializer)
    sender = Sender(system, ids, plan, args.senders, naive_queue=q)
    sampler = Sampler(system.conn, [naive.QUEUE], portal).start()
    with console.status(f"Naive baseline: {len(events)} events, one job each…"):
        first, last_sent = sender.send(events)
        quiet = settle(system.conn, [naive.QUEUE], portal, timeout_s=args.timeout)
    timeline = sampler.stop()
    stats1 = portal.control("stats")
    console.print(f"[green]✓[/] Naive baseline quiet {quiet - first:.1f} s after its first event")
    with console.status("Reading the portal back…"):
        return measure(system, plan, ids, events, name="naive", first=first, last_sent=last_sent, quiet=quiet,
                       stats0=stats0, stats1=stats1, latest=sender.latest, rate=rate, queue=naive.QUEUE,
                       log_prefix="naive", check=False, timeline=timeline)


def _code_version() -> dict[str, Any]:
    """The commit measured, and the files under test that differed from it (others edit the tree too)."""
    import subprocess

    from bench.common import REPO

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = git("status", "--porcelain", "--", "worker", "webhooks", "rules", "sandbox", "config.yaml")
    return {"commit": git("rev-parse", "--short", "HEAD").strip(),
            "uncommitted": [line[3:] for line in dirty.splitlines() if len(line) > 3]}


def _ratios(ours: PhaseResult, naive_: PhaseResult | None) -> dict[str, Any]:
    if naive_ is None:
        return {}
    return {"calls_per_event_ours_over_naive": round(ours.calls_per_event / naive_.calls_per_event, 4)
            if naive_.calls_per_event else None,
            "events_per_s_ours_over_naive": round(ours.events_per_s / naive_.events_per_s, 1)
            if naive_.events_per_s else None}


def _goals(ours: PhaseResult) -> dict[str, Any]:
    return {
        "calls_per_event <= 0.1": ours.calls_per_event <= GOALS["calls_per_event"],
        "calls <= 1.5 x minimum": ours.ratio_to_minimum is not None and ours.ratio_to_minimum <= 1.5,
        "zero 429s": ours.rate_limited == 0,
        ">= 80 % of the throughput the rate limit allows": ours.pct_of_allowed is not None
        and ours.pct_of_allowed >= GOALS["pct_of_allowed"],
        "nothing lost": ours.lost == 0,
    }


# -- printing ----------------------------------------------------------------------------------------------
def print_report(report: Mapping[str, Any]) -> None:
    ours, nv = report["ours"], report["naive"]
    t = Table(title=f"End-to-end burst — {report['date']} — {report['machine']}")
    t.add_column("")
    t.add_column("ours", justify="right")
    t.add_column("naive baseline", justify="right")
    t.add_column("goal", justify="right")

    def row(label: str, key: Callable[[Mapping[str, Any]], Any], goal: str = "") -> None:
        t.add_row(label, _fmt(key(ours)), _fmt(key(nv)) if nv else "-", goal)

    row("events", lambda r: r["events"])
    row("wall time, first event → quiet (s)", lambda r: r["wall_s"])
    row("  of which sending (s)", lambda r: r["send_s"])
    row("events/s end to end", lambda r: r["events_per_s"])
    row("HubSpot API calls", lambda r: r["api_calls"])
    row("calls per event", lambda r: r["calls_per_event"], "≤ 0.1")
    row("minimum calls (see below)", lambda r: r["minimum"]["total"])
    row("calls / minimum", lambda r: r["ratio_to_minimum"], "≤ 1.5")
    row("429s received", lambda r: r["rate_limited"], "0")
    row("lag p50 / p99 (ms)", lambda r: f"{_fmt(r['lag_ms']['p50'])} / {_fmt(r['lag_ms']['p99'])}")
    row("  contacts measured / excluded", lambda r: f"{r['lag_ms']['contacts']} / {r['lag_ms']['excluded']}")
    row("throughput the limit allows (ev/s)", lambda r: r["allowed"].get("events_per_s"))
    row("events/s as % of that", lambda r: r["pct_of_allowed"], "≥ 80 %")
    row("  sender ceiling on this box (ev/s)", lambda r: r["sender_events_per_s"])
    row("  webhooks delivered, first event → last (s)", lambda r: r.get("delivered_s"))
    row("  ingest ceiling on this box (ev/s)", lambda r: r.get("ingest_events_per_s"))
    row("  % of min(allowed, sender, ingest ceiling)", lambda r: r["pct_of_reachable"])
    row("jobs run", lambda r: r["jobs"].get("jobs"))
    row("failed jobs", lambda r: r["failed_jobs"], "0")
    t.add_row("lost (contacts, companies, dup. tasks)", _fmt(ours.get("lost")), "-", "0")
    console.print(t)
    if report["ratios"]:
        r = report["ratios"]
        console.print(f"ours / naive: calls per event x{_fmt(r['calls_per_event_ours_over_naive'])}, "
                      f"events/s x{_fmt(r['events_per_s_ours_over_naive'])}")
    for name, res in (("ours", ours), ("naive", nv)):
        if not res:
            continue
        m = Table(title=f"Minimum calls — {name}: {res['minimum']['total']} "
                        f"({res['minimum']['general']} in the 10 s window + {res['minimum']['search']} searches)")
        m.add_column("part")
        m.add_column("calls", justify="right")
        m.add_column("formula")
        for part, v in res["minimum"]["parts"].items():
            m.add_row(part, str(v["calls"]), v["formula"])
        console.print(m)
        console.print(f"  throughput allowed: {res['allowed'].get('formula')} = "
                      f"{_fmt(res['allowed'].get('events_per_s'))} events/s")
        e = Table(title=f"API calls by endpoint — {name}: {res['api_calls']}")
        e.add_column("endpoint")
        e.add_column("calls", justify="right")
        for endpoint, n in res["calls_by_endpoint"].items():
            e.add_row(endpoint, str(n))
        console.print(e)
        console.print(f"  jobs: {json.dumps(res['jobs'])}")
    if ours.get("lost_detail"):
        d = ours["lost_detail"]
        console.print(f"Lost: {d['contacts']} contacts, {d['companies']} companies, {d['duplicate_tasks']} duplicated "
                      f"tasks; contacts by likely cause: {json.dumps(d['by_cause'])}")
    if ours.get("checks"):
        c = Table(title="Nothing lost: checks")
        c.add_column("check")
        c.add_column("checked", justify="right")
        c.add_column("failed", justify="right")
        c.add_column("examples")
        for name, v in ours["checks"].items():
            c.add_row(name, str(v["checked"]), str(v["failed"]), "; ".join(v["examples"][:2]))
        console.print(c)
    g = report["goals"]
    console.print("Goals: " + ", ".join(f"{k}: {'[green]met[/]' if ok else '[red]missed[/]'}" for k, ok in g.items()))
    console.print(f"Command: {report['command']} — took {report['took_s']} s; logs {report['logs']}")


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1 else f"{v:,.1f}"
    return str(v)


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__.split("\n\n")[0])
    ap.add_argument("--contacts", type=int, default=2000)
    ap.add_argument("--companies", type=int, default=200)
    ap.add_argument("--events", type=int, default=10000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--latency-ms", type=int, default=50)
    ap.add_argument("--rate-limit", default="100/10s", help="the sandbox's limit; the worker is configured to it")
    ap.add_argument("--baseline-events", type=int, default=600, help="0 skips the naive baseline")
    ap.add_argument("--redis-db", type=int, default=11)
    ap.add_argument("--redis-url", default=None, help="default: $REDIS_URL")
    ap.add_argument("--json", dest="json_path", default=None, help="also write the report here")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--senders", type=int, default=8, help="threads sending the burst")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for quiescence")
    ap.add_argument("--config", default=None, help="config.yaml to start from (default: the bundled one)")
    ap.add_argument("--no-stale-bounces", action="store_true",
                    help="bounce only the bouncers' addresses (no bounce before a rep's change)")
    ap.add_argument("--coalesce-max-contacts", type=int, default=None, help="override worker.coalesce_max_contacts")
    args = ap.parse_args(argv)
    args.argv = argv
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    report = run(args)
    print_report(report)
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
