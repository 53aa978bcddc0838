"""Read the sandbox's final state and hold it against every story's expectation.

Per contact: status/milestone (and reason, owner, the rep's own property values), deals
associated with it and their stages, tasks by kind and by idempotency key (the worker
writes `[lifecycle <key>]` in each task body), and successful unsubscribe-all calls for
its address (counted by `bench.chaos.sandbox_main`). Per company: account_status, POC
and the lead-gen suppression flags of its contacts (spec §6).

- lost: the contact is stuck in a state on its way (`Expect.earlier`), or an expected
  effect (deal, task, owner, unsubscribe) is missing: some event never took effect;
- wrong: any other difference from what the rules say;
- duplicates: side effects beyond the expected count (deals, tasks per kind or per key,
  unsubscribe calls).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.chaos.stories import Story, expected_companies
from bench.chaos.system import ChaosSystem

TASK_KEY = re.compile(r"\[lifecycle ([a-z_]+):(\d+):([^\]]*)\]")


@dataclass
class Verdict:
    contacts: int = 0
    companies: int = 0
    lost: int = 0
    wrong: int = 0
    duplicates: int = 0
    companies_wrong: int = 0
    dup_by_kind: Counter[str] = field(default_factory=Counter)
    problems: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"contacts": self.contacts, "companies": self.companies, "lost": self.lost, "wrong": self.wrong,
                "duplicates": self.duplicates, "companies_wrong": self.companies_wrong,
                "dup_by_kind": dict(self.dup_by_kind),
                "problems_by_kind": dict(Counter(f"{p.get('kind', 'company')} ({p['category']})"
                                                 for p in self.problems)),
                "problems": self.problems[:40]}


def _history(dump: dict[str, Any], name: str, limit: int = 6) -> list[str]:
    entries = (dump.get("propertiesWithHistory") or {}).get(name) or []
    return [f"{e.get('value')}@{e.get('timestamp')} by {e.get('sourceType')}:{e.get('sourceId')}"
            for e in entries[:limit]]


def check(system: ChaosSystem, stories: list[Story], companies: dict[int, str]) -> Verdict:
    v = Verdict()
    tasks_by_contact: dict[str, Counter[str]] = {}
    keys_by_contact: dict[str, Counter[str]] = {}
    for task in system.objects("tasks"):
        match = TASK_KEY.search((task.get("properties") or {}).get("hs_task_body") or "")
        if not match:
            continue
        kind, cid = match.group(1), match.group(2)
        tasks_by_contact.setdefault(cid, Counter())[kind] += 1
        keys_by_contact.setdefault(cid, Counter())[match.group(0)] += 1
    deals = {str(d["id"]): d.get("properties") or {} for d in system.objects("deals")}
    unsubscribed = system.unsubscribes()
    dumps: dict[str, dict[str, Any]] = {}
    for story in stories:
        v.contacts += 1
        if story.cid is None:
            v.lost += 1
            v.problems.append({"kind": story.kind, "n": story.n, "category": "lost", "why": ["never created"]})
            continue
        dump = system.object("contacts", story.cid)
        dumps[story.cid] = dump
        props = dump.get("properties") or {}
        ex = story.expect
        lost: list[str] = []
        wrong: list[str] = []
        dups: Counter[str] = Counter()
        state = (props.get("contact_status") or None, props.get("contact_milestone") or None)
        if state[0] not in ex.status or state[1] not in ex.milestone:
            want = f"{'|'.join(sorted(ex.status))}/{'|'.join(sorted(ex.milestone))}"
            text = f"state {state[0]}/{state[1]}, expected {want}"
            (lost if state in ex.earlier or state[0] is None else wrong).append(text)
        if ex.reason is not None and (props.get("milestone_reason") or None) not in ex.reason:
            wrong.append(f"reason {props.get('milestone_reason')!r}, expected {sorted(ex.reason)}")
        owner = props.get("hubspot_owner_id") or None
        if ex.owner_in is not None:
            if not ex.owner_in and owner:
                wrong.append(f"owner {owner}, expected none")
            elif ex.owner_in and owner not in ex.owner_in:
                (lost if owner is None else wrong).append(f"owner {owner}, expected one of {sorted(ex.owner_in)}")
        for name, value in ex.props.items():
            if (props.get(name) or "") != value:
                wrong.append(f"{name} {props.get(name)!r}, the rep's last value was {value!r} (lost update)")
        my_deals = sorted((dump.get("associations") or {}).get("deals") or {})
        if len(my_deals) < ex.deals[0]:
            lost.append(f"{len(my_deals)} deals, expected {ex.deals[0]}")
        if len(my_deals) > ex.deals[1]:
            dups["deal"] += len(my_deals) - ex.deals[1]
        if ex.deal_stages is not None and my_deals:
            stages = sorted({deals.get(d, {}).get("dealstage") or "?" for d in my_deals})
            if not set(stages) <= ex.deal_stages:
                wrong.append(f"deal stages {stages}, expected {sorted(ex.deal_stages)}")
        kinds = tasks_by_contact.get(story.cid, Counter())
        by_key = keys_by_contact.get(story.cid, Counter())
        kind_excess = 0
        for kind in set(kinds) | set(ex.tasks):
            low, high = ex.tasks.get(kind, (0, 0))
            if kinds[kind] < low:
                lost.append(f"{kinds[kind]} {kind} tasks, expected {low}")
            kind_excess += max(0, kinds[kind] - high)
        key_excess = sum(n - 1 for n in by_key.values() if n > 1)
        if max(kind_excess, key_excess):
            dups["task"] += max(kind_excess, key_excess)
        calls = unsubscribed.get(story.email.lower(), 0)
        if calls < ex.unsub[0]:
            lost.append(f"{calls} unsubscribe calls, expected {ex.unsub[0]}")
        if calls > ex.unsub[1]:
            dups["unsubscribe"] += calls - ex.unsub[1]
        v.dup_by_kind.update(dups)
        v.duplicates += sum(dups.values())
        if lost or wrong or dups:
            category = "lost" if lost else ("wrong" if wrong else "duplicate")
            if lost:
                v.lost += 1
            elif wrong:
                v.wrong += 1
            v.problems.append({
                "contact": story.cid, "kind": story.kind, "category": category, "why": lost + wrong,
                "duplicates": dict(dups), "tasks": dict(kinds), "deals": my_deals,
                "history": {"contact_status": _history(dump, "contact_status"),
                            "contact_milestone": _history(dump, "contact_milestone")},
            })
    for index, want in expected_companies(stories).items():
        if index not in companies:
            continue
        v.companies += 1
        company_dump = system.object("companies", companies[index])
        props = company_dump.get("properties") or {}
        why = []
        if (props.get("account_status") or "") not in want["account_status"]:
            why.append(f"account_status {props.get('account_status')!r}, expected {sorted(want['account_status'])}")
        poc = want["poc"]
        if poc is not None and props.get("poc_contact_id") != poc.cid:
            why.append(f"poc_contact_id {props.get('poc_contact_id')!r}, expected {poc.cid}")
        if poc is None and props.get("poc_contact_id"):
            why.append(f"poc_contact_id {props.get('poc_contact_id')!r}, expected none")
        for member in want["members"]:
            if member.cid is None or member.cid not in dumps:
                continue
            flag = (dumps[member.cid].get("properties") or {}).get("lead_gen_suppressed") or ""
            should = poc is not None and member is not poc
            if should and flag != "true":
                why.append(f"contact {member.cid}: lead_gen_suppressed {flag!r} in a customer account")
            if not should and flag == "true":
                why.append(f"contact {member.cid}: lead_gen_suppressed 'true' outside a customer account")
        if why:
            v.companies_wrong += 1
            v.problems.append({"company": companies[index], "category": "wrong", "why": why, "history": {
                "account_status": _history(company_dump, "account_status"),
                **{f"{m.cid}.{name}": _history(dumps[m.cid], name)
                   for m in want["members"] if m.cid in dumps
                   for name in ("contact_status", "lead_gen_suppressed")}}})
    v.wrong += v.companies_wrong
    return v
