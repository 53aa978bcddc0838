"""Side effects of Decisions, each idempotent under redelivery, replay and concurrent workers.

- Owners: round-robin per vertical with an atomic Redis counter (one script call for all of a
  job's picks); the pick is remembered under the action's key, so a replayed job assigns the
  same owner.
- Tasks and unsubscribes: an effect ledger in Redis (`lc:effect:<portal>:<key>`), set right
  after HubSpot accepted the batch; a key already in the ledger is skipped.
- Deals: guarded by state: a contact with an open deal in the pipeline gets no second one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import structlog

from rules.model import Action, ActionType, Contact, Decision
from worker.deps import Deps

log = structlog.get_logger(__name__)
LEDGER_TTL_S = 90 * 86400
TASK_TO_CONTACT = 204
DEAL_TO_CONTACT = 3
DEAL_TO_COMPANY = 341


@dataclass
class EffectsReport:
    owners_assigned: int = 0
    tasks_created: int = 0
    deals_created: int = 0
    deals_moved: int = 0
    unsubscribed: int = 0
    poc_contacts: list[str] = field(default_factory=list)


def _actions(decisions: Mapping[str, Decision], kind: ActionType) -> list[tuple[str, Action]]:
    return [(cid, a) for cid, d in decisions.items() for a in d.actions if a.type == kind]


def _ledger_key(deps: Deps, key: str) -> str:
    return f"lc:effect:{deps.portal_id}:{key}"


def pending_keys(deps: Deps, keys: list[str]) -> set[str]:
    """The keys among `keys` whose effect the ledger does not record as done."""
    if not keys:
        return set()
    values = deps.redis.mget([_ledger_key(deps, k) for k in keys])
    return {k for k, v in zip(keys, values, strict=True) if v is None}


def _mark_done(deps: Deps, keys: Iterable[str]) -> None:
    pipe = deps.redis.pipeline(transaction=False)
    for key in keys:
        pipe.set(_ledger_key(deps, key), "1", ex=LEDGER_TTL_S)
    pipe.execute()


def perform(deps: Deps, contacts: Mapping[str, Contact], decisions: Mapping[str, Decision],
            updates: dict[str, dict[str, str]], *, c2co: Mapping[str, list[str]] | None = None) -> EffectsReport:
    """Perform every action of `decisions`; owner picks are added to `updates`. `c2co`: the
    contacts' companies, when the caller has read them (the deals' names need them)."""
    report = EffectsReport()
    assign_owners(deps, contacts, decisions, updates, report)  # first: deals and tasks carry the owner
    # Deals, tasks and unsubscribes are independent of one another (each is idempotent on its own
    # and counts in its own field of `report`): done side by side, a big job waits for HubSpot's
    # latency once rather than once per kind. The first failure raises after the others finish.
    with ThreadPoolExecutor(3, thread_name_prefix="effects") as pool:
        futures = [pool.submit(ensure_deals, deps, contacts, decisions, updates, report, c2co),
                   pool.submit(create_tasks, deps, contacts, decisions, updates, report),
                   pool.submit(unsubscribe, deps, contacts, decisions, report)]
    for future in futures:
        future.result()
    report.poc_contacts = [cid for cid, _ in _actions(decisions, ActionType.SET_COMPANY_POC)]
    return report


# -- owners ---------------------------------------------------------------------------------------
# For each pick: the owner remembered under the action's key, else the next owner of the vertical's
# round-robin (skipping the contact's current owner once), remembered. One script call for all of a
# job's picks, atomic: a burst assigns hundreds of owners, and three or four round trips each were
# a tenth of a second of its time.
_PICK_OWNERS = """
local ttl = tonumber(ARGV[1])
local picked = {}
for i = 1, #KEYS, 2 do
  local memo, counter = KEYS[i], KEYS[i + 1]
  local owner = redis.call('GET', memo)
  if not owner then
    local owners = cjson.decode(ARGV[i + 1])
    local avoid = ARGV[i + 2]
    owner = owners[(redis.call('INCR', counter) - 1) % #owners + 1]
    if owner == avoid and #owners > 1 then
      owner = owners[(redis.call('INCR', counter) - 1) % #owners + 1]
    end
    redis.call('SET', memo, owner, 'EX', ttl)
  end
  picked[#picked + 1] = owner
end
return picked
"""


@dataclass(frozen=True)
class OwnerPick:
    vertical: str | None
    key: str  # the action's idempotency key: a replay gets the same owner
    avoid: str | None = None  # the current owner, skipped once when the vertical has others


def pick_owners(deps: Deps, picks: list[OwnerPick]) -> list[str]:
    """The owner of each pick (round-robin per vertical, atomic, remembered under its key)."""
    if not picks:
        return []
    settings = deps.settings
    keys: list[str] = []
    args: list[str | int] = [LEDGER_TTL_S]
    for pick in picks:
        vertical = pick.vertical if pick.vertical in settings.verticals else None
        owners = settings.verticals[vertical] if vertical else settings.default_owners
        keys += [f"lc:owner:{deps.portal_id}:{pick.key}", f"lc:rr:{deps.portal_id}:{vertical or '_default'}"]
        args += [json.dumps(list(owners)), pick.avoid or ""]
    picked = deps.redis.eval(_PICK_OWNERS, len(keys), *keys, *args)
    return [p.decode() if isinstance(p, bytes) else str(p) for p in picked]


def assign_owners(deps: Deps, contacts: Mapping[str, Contact], decisions: Mapping[str, Decision],
                  updates: dict[str, dict[str, str]], report: EffectsReport) -> None:
    owner_prop = deps.settings.policy.contact.owner
    wanted: list[tuple[str, str | None, OwnerPick]] = []
    for cid, action in _actions(decisions, ActionType.ASSIGN_OWNER):
        current = updates.get(cid, {}).get(owner_prop) or contacts[cid].get(owner_prop)
        if action.params.get("mode") != "reassign" and current:
            continue
        wanted.append((cid, current, OwnerPick(action.params.get("vertical"), action.key, current)))
    for (cid, current, _), owner in zip(wanted, pick_owners(deps, [w[2] for w in wanted]), strict=True):
        if owner != current:
            updates.setdefault(cid, {})[owner_prop] = owner
            report.owners_assigned += 1


def _owner_of(deps: Deps, cid: str, contacts: Mapping[str, Contact], updates: Mapping[str, Mapping[str, str]]
              ) -> str | None:
    prop = deps.settings.policy.contact.owner
    return updates.get(cid, {}).get(prop) or contacts[cid].get(prop)


# -- tasks ----------------------------------------------------------------------------------------
def create_tasks(deps: Deps, contacts: Mapping[str, Contact], decisions: Mapping[str, Decision],
                 updates: Mapping[str, Mapping[str, str]], report: EffectsReport) -> None:
    """Tasks in batch creates. Before each create the keys are marked *intended*; a key intended
    but not done means an earlier attempt died with the create in flight (a killed worker), and
    HubSpot may have made the task: the contact's tasks are read, and a task already tagged with
    the key (`[lifecycle <key>]` in its body) is not made again."""
    wanted = _actions(decisions, ActionType.CREATE_TASK)
    todo = pending_keys(deps, [a.key for _, a in wanted])
    wanted = [(cid, a) for cid, a in wanted if a.key in todo]
    made = _made_before(deps, wanted)
    if made:
        log.info("tasks_found", tasks=len(made), why="created by an attempt that died before recording them")
        _mark_done(deps, made)
        wanted = [(cid, a) for cid, a in wanted if a.key not in made]
    if not wanted:
        return
    _mark_intended(deps, (a.key for _, a in wanted))
    now = deps.clock_ms()
    inputs = []
    for cid, action in wanted:
        hours = int(action.params.get("due_in_hours", "24") or 24)
        props = {
            "hs_timestamp": str(now + hours * 3_600_000),
            "hs_task_subject": action.params.get("subject", action.params.get("kind", "Lifecycle")),
            "hs_task_body": f"{action.params.get('body', '')}\n[lifecycle {action.key}]".strip(),
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": "HIGH" if action.params.get("kind") == "new_mql" else "MEDIUM",
            "hs_task_type": "TODO",
        }
        owner = _owner_of(deps, cid, contacts, updates)
        if owner:
            props["hubspot_owner_id"] = owner
        inputs.append({"properties": props, "associations": [{"to": cid, "type_id": TASK_TO_CONTACT}]})
    deps.hubspot.create_objects("tasks", inputs)
    _mark_done(deps, (a.key for _, a in wanted))
    report.tasks_created += len(inputs)


def _intent_key(deps: Deps, key: str) -> str:
    return f"lc:intent:{deps.portal_id}:{key}"


def _mark_intended(deps: Deps, keys: Iterable[str]) -> None:
    pipe = deps.redis.pipeline(transaction=False)
    for key in keys:
        pipe.set(_intent_key(deps, key), "1", ex=LEDGER_TTL_S)
    pipe.execute()


def _made_before(deps: Deps, wanted: list[tuple[str, Action]]) -> set[str]:
    """Keys among `wanted` an earlier attempt intended and whose task HubSpot has (tagged)."""
    if not wanted:
        return set()
    flags = deps.redis.mget([_intent_key(deps, a.key) for _, a in wanted])
    intended = [(cid, a.key) for (cid, a), flag in zip(wanted, flags, strict=True) if flag]
    if not intended:
        return set()
    c2t = deps.hubspot.associations("contacts", "tasks", sorted({cid for cid, _ in intended}))
    task_ids = sorted({t for ids in c2t.values() for t in ids})
    rows = deps.hubspot.read_objects("tasks", task_ids, ["hs_task_body"]) if task_ids else {}
    bodies = " ".join((row.get("properties") or {}).get("hs_task_body") or "" for row in rows.values())
    return {key for _, key in intended if f"[lifecycle {key}]" in bodies}


# -- unsubscribe ----------------------------------------------------------------------------------
def unsubscribe(deps: Deps, contacts: Mapping[str, Contact], decisions: Mapping[str, Decision],
                report: EffectsReport) -> None:
    """All the job's unsubscribes in batch calls (100 addresses each), then marked done together:
    a failure marks none, and the retry redoes them all (unsubscribing twice is harmless)."""
    wanted = _actions(decisions, ActionType.UNSUBSCRIBE_ALL)
    todo = pending_keys(deps, [a.key for _, a in wanted])
    email_prop = deps.settings.policy.contact.email
    emails: dict[str, str] = {}  # action key -> address
    for cid, action in wanted:
        if action.key not in todo:
            continue
        email = contacts[cid].get(email_prop)
        if not email:
            log.warning("unsubscribe_skipped", contact_id=cid, why="contact has no email")
            continue
        emails[action.key] = email
    if not emails:
        return
    deps.hubspot.unsubscribe_all_many(emails.values())
    _mark_done(deps, emails)
    report.unsubscribed += len(emails)


# -- deals ----------------------------------------------------------------------------------------
def ensure_deals(deps: Deps, contacts: Mapping[str, Contact], decisions: Mapping[str, Decision],
                 updates: Mapping[str, Mapping[str, str]], report: EffectsReport,
                 c2co: Mapping[str, list[str]] | None = None) -> None:
    creates = {cid: a for cid, a in _actions(decisions, ActionType.CREATE_DEAL)}
    moves = {cid: a for cid, a in _actions(decisions, ActionType.UPDATE_DEAL_STAGE)}
    if not creates and not moves:
        return
    s = deps.settings
    c2d = deps.hubspot.associations("contacts", "deals", sorted(set(creates) | set(moves)))
    deal_ids = sorted({d for ids in c2d.values() for d in ids})
    deals = deps.hubspot.read_objects("deals", deal_ids, ["pipeline", "dealstage", "dealname"]) if deal_ids else {}

    def open_deals(cid: str) -> list[str]:
        return [d for d in c2d.get(cid, []) if d in deals
                and deals[d]["properties"].get("pipeline") == s.deal_pipeline
                and deals[d]["properties"].get("dealstage") not in s.deal_closed_stages]

    new = {cid: a for cid, a in creates.items() if not open_deals(cid)}
    if new:
        _create_deals(deps, contacts, new, updates, c2co)
        report.deals_created += len(new)
    stage_updates: dict[str, dict[str, str]] = {}
    for cid, action in moves.items():
        for deal in open_deals(cid):
            stage = action.params.get("stage") or s.deal_stages.get(action.params.get("milestone", ""), "")
            if stage and deals[deal]["properties"].get("dealstage") != stage:
                stage_updates[deal] = {"dealstage": stage}
    if stage_updates:
        deps.hubspot.update_objects("deals", stage_updates)
        report.deals_moved += len(stage_updates)


def _create_deals(deps: Deps, contacts: Mapping[str, Contact], new: Mapping[str, Action],
                  updates: Mapping[str, Mapping[str, str]], known: Mapping[str, list[str]] | None = None) -> None:
    s = deps.settings
    p = s.policy.contact
    if known is not None and all(cid in known for cid in new):
        c2co = {cid: list(known[cid]) for cid in new}
    else:
        c2co = deps.hubspot.associations("contacts", "companies", sorted(new))
    company_ids = sorted({ids[0] for ids in c2co.values() if ids})
    companies = deps.hubspot.read_objects("companies", company_ids, ["name"]) if company_ids else {}
    inputs = []
    for cid, action in new.items():
        contact = contacts[cid]
        company_id = (c2co.get(cid) or [None])[0]
        company_name = (companies.get(company_id or "", {}).get("properties") or {}).get("name") or ""
        name = s.deal_name_template.format(company=company_name, firstname=contact.get(p.first_name) or "",
                                           lastname=contact.get(p.last_name) or "").strip(" —-") or f"Deal {cid}"
        props = {"dealname": name, "pipeline": s.deal_pipeline,
                 "dealstage": s.deal_stages.get(action.params.get("milestone", "working"), "")
                 or next(iter(s.deal_stages.values()))}
        gmv = contact.get(p.gmv_forecast)
        if gmv:
            props["amount"] = gmv
        owner = _owner_of(deps, cid, contacts, updates)
        if owner:
            props["hubspot_owner_id"] = owner
        assoc = [{"to": cid, "type_id": DEAL_TO_CONTACT}]
        if company_id:
            assoc.append({"to": company_id, "type_id": DEAL_TO_COMPANY})
        inputs.append({"properties": props, "associations": assoc})
    deps.hubspot.create_objects("deals", inputs)
