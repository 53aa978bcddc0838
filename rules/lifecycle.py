"""decide(): the lifecycle rules (spec §3, T1-T17) run to a fixed point over one contact.

Level-triggered (docs/rules-decisions.md): the rules read the contact's current properties
and history; triggers add only facts state cannot show. Echoes of this app's writes are
ignored. Each step applies the first rule that changes something, in the order
T16 → T1 → T15 → T4 → manual rows (T5-T14) → T2 → T3, until nothing changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from rules.model import Action, ActionType, Contact, Decision, HistoryEntry, Trigger, TriggerKind
from rules.policy import ContactProps, ManualTransition, Policy, Target
from rules.triggers import (
    SELF_SOURCE,
    campaign_fact,
    campaign_value,
    format_ms,
    health_fact,
    is_health_value,
    parse_ms,
)

MAX_STEPS = 10
_T = TypeVar("_T")


@dataclass(frozen=True)
class _Ctx:
    """What one evaluation sees and never changes."""

    contact: Contact
    triggers: tuple[Trigger, ...]  # without echoes, oldest first
    policy: Policy
    now_ms: int
    base: Mapping[str, str | None]  # the contact's properties (+ trigger values for ones it lacks)
    memo: dict[str, Any] = field(default_factory=dict, compare=False)  # what is worked out from the above once

    @property
    def p(self) -> ContactProps:
        return self.policy.contact


@dataclass
class _State:
    """The working copy: the properties as they are after the steps taken so far."""

    props: dict[str, str | None]
    written: dict[str, str] = field(default_factory=dict)
    actions: dict[str, Action] = field(default_factory=dict)
    rows: list[str] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)  # text -> row ("" for none)
    status_anchor: str = ""
    restored: tuple[str, int] | None = None  # a person's milestone put back by `_restore_lost_change`, and its time

    def get(self, name: str) -> str | None:
        value = self.props.get(name)
        return value if value not in (None, "") else None


@dataclass(frozen=True)
class _Step:
    """A rule's effect: property updates, actions and the sentence that explains them."""

    row: str
    text: str
    updates: Mapping[str, str] = field(default_factory=dict)
    actions: tuple[Action, ...] = ()
    anchor: str = ""  # the idempotency anchor of a status change (rollup key)


@dataclass(frozen=True)
class _Note:
    """Why a rule did not fire (used for no-op reasons; T17 counts as a row)."""

    text: str
    row: str = ""


@dataclass(frozen=True)
class _NeedsHistory:
    row: str
    text: str


_Out = _Step | _Note | _NeedsHistory | None
_SILENT = _Note("")  # a rule that does not apply and has nothing worth saying


def decide(contact: Contact, triggers: Sequence[Trigger], policy: Policy, now_ms: int) -> Decision:
    """What to write and do for `contact` after `triggers`. Total: every input gets a Decision."""
    live = tuple(sorted((t for t in triggers if not t.by_self), key=lambda t: (t.occurred_at, t.event_key)))
    if triggers and not live:
        return Decision({}, (), "Nothing to do: every trigger is an echo of this app's own writes.")
    if _deleted(live):
        return Decision({}, (), f"Contact {contact.id} was deleted in HubSpot: skipped.", skip=True)
    if any(contact.id in t.merged_ids and contact.id != t.contact_id for t in live):
        return Decision({}, (), f"Contact {contact.id} was merged into another contact: skipped.", skip=True)
    ctx = _Ctx(contact, live, policy, now_ms, _overlay(contact, live))
    state = _State(dict(ctx.base))
    stop = _run(ctx, state)
    if stop is not None:
        return Decision(
            {},
            (),
            _sentence(f"{stop.text} (re-read the contact with propertiesWithHistory)"),
            (stop.row,),
            needs_history=True,
        )
    return _decision(ctx, state)


def _deleted(triggers: tuple[Trigger, ...]) -> bool:
    """Deleted, and not restored or changed after the deletion."""
    deleted = [t.occurred_at for t in triggers if t.kind is TriggerKind.DELETED]
    return bool(deleted) and max(deleted) >= triggers[-1].occurred_at


def _overlay(contact: Contact, triggers: tuple[Trigger, ...]) -> dict[str, str | None]:
    """The contact's properties; a property it does not carry at all takes the newest trigger value."""
    props = dict(contact.properties)
    for t in triggers:
        if t.kind is TriggerKind.PROPERTY_CHANGED and t.property and t.property not in contact.properties:
            props[t.property] = t.value
    return props


def _run(ctx: _Ctx, state: _State) -> _NeedsHistory | None:
    for _ in range(MAX_STEPS):
        taken = _step(ctx, state)
        if taken is None or isinstance(taken, _NeedsHistory):
            return taken
    state.sentences.append(f"stopped after {MAX_STEPS} steps without reaching a fixed point (check the config)")
    return None


def _step(ctx: _Ctx, state: _State) -> _Step | _NeedsHistory | None:
    """Apply the first rule that changes something; None at the fixed point."""
    for rule in _RULES:
        out = rule(ctx, state)
        if isinstance(out, _NeedsHistory):
            return out
        if isinstance(out, _Note):
            if out.text:
                state.notes.setdefault(out.text, out.row)
        elif out is not None and _apply(state, out):
            return out
    return None


def _apply(state: _State, step: _Step) -> bool:
    changed = {k: v for k, v in step.updates.items() if state.props.get(k) != v}
    new = [a for a in step.actions if a.key not in state.actions]
    if not changed and not new:
        return False
    state.props.update(changed)
    state.written.update(changed)
    state.actions.update((a.key, a) for a in new)
    if step.row and step.row not in state.rows:
        state.rows.append(step.row)
    state.sentences.append(step.text)
    state.status_anchor = step.anchor or state.status_anchor
    return True


def _decision(ctx: _Ctx, state: _State) -> Decision:
    updates = {k: v for k, v in state.written.items() if ctx.base.get(k) != v}
    actions = tuple(state.actions.values())
    rollup = _rollup(ctx, state, updates)
    if rollup is not None:
        actions += (rollup,)
    sticky = [text for text, row in state.notes.items() if row]
    rows = tuple(state.rows) + tuple(dict.fromkeys(r for r in state.notes.values() if r and r not in state.rows))
    if not updates and not actions:
        why = list(state.notes) or [f"{_pair(ctx, state)}: no rule applies"]
        return Decision({}, (), _sentence("Nothing to do: " + "; ".join(why)), rows)
    return Decision(updates, actions, _sentence("; ".join(state.sentences + sticky)), rows)


def _rollup(ctx: _Ctx, state: _State, updates: Mapping[str, str]) -> Action | None:
    """Spec §6: recompute the companies after a status change or an association change / merge."""
    status = updates.get(ctx.p.status)
    related = [
        t
        for t in ctx.triggers
        if t.kind is TriggerKind.MERGED
        or (t.kind is TriggerKind.ASSOCIATION_CHANGED and "COMPANY" in (t.association_type or "COMPANY"))
    ]
    if status is not None:
        anchor = f"{status}@{state.status_anchor}"
    elif related:
        anchor = related[-1].event_key or str(related[-1].occurred_at)
    else:
        return None
    if related:
        what = "a merge" if related[-1].kind is TriggerKind.MERGED else "a company association change"
        state.sentences.append(f"{what} → recompute the contact's companies (§6)")
    return Action(ActionType.ROLLUP_COMPANIES, _key("rollup_companies", ctx, anchor))


# -- helpers --------------------------------------------------------------------------------------
def _sentence(text: str) -> str:
    """One line ending with a period, whatever the property values in it contain."""
    text = " ".join(text.split())
    return text if text.endswith(".") else text + "."


def _pair(ctx: _Ctx, state: _State) -> str:
    return f"{state.get(ctx.p.status) or '(no status)'}/{state.get(ctx.p.milestone) or '(no milestone)'}"


def _key(kind: str, ctx: _Ctx, anchor: str) -> str:
    return f"{kind}:{ctx.contact.id}:{anchor}"


def _now(ctx: _Ctx) -> str:
    return str(ctx.now_ms)


def _history(ctx: _Ctx, name: str) -> tuple[HistoryEntry, ...]:
    return tuple(ctx.contact.history.get(name, ()))


def _by_person(ctx: _Ctx, entry: HistoryEntry) -> bool:
    return not (entry.source_type == SELF_SOURCE and entry.source_id == ctx.policy.app_id)


def _memo(ctx: _Ctx, name: str, work: Callable[[_Ctx], _T]) -> _T:
    """`work(ctx)`, worked out once per evaluation: the rules ask the same of `ctx` at every step."""
    if name not in ctx.memo:
        ctx.memo[name] = work(ctx)
    return cast(_T, ctx.memo[name])


def _milestone_triggers(ctx: _Ctx) -> tuple[Trigger, ...]:
    return _memo(ctx, "milestone_triggers", lambda c: tuple(
        t for t in c.triggers if t.kind is TriggerKind.PROPERTY_CHANGED and t.property == c.p.milestone))


def _person_milestone_times(ctx: _Ctx) -> list[int]:
    """When a person (anyone but this app) changed the milestone, as far as triggers and history tell."""
    times = [t.occurred_at for t in _milestone_triggers(ctx)]
    return times + [e.timestamp for e in _history(ctx, ctx.p.milestone) if _by_person(ctx, e)]


def _fresh_change(ctx: _Ctx, state: _State) -> int | None:
    """Time of a person's change to the current milestone that is not stamped yet, else None."""
    milestone = state.get(ctx.p.milestone)
    stamp = parse_ms(state.props.get(ctx.p.milestone_changed_at))
    if state.restored is not None and state.restored[0] == milestone:  # a person's, though the worker wrote it back
        return state.restored[1] if stamp is None or state.restored[1] > stamp else None
    if milestone is None or ctx.p.milestone in state.written:
        return None
    times = [t.occurred_at for t in _milestone_triggers(ctx) if t.value == milestone]
    entries = _history(ctx, ctx.p.milestone)
    if entries and entries[0].value == milestone and _by_person(ctx, entries[0]):
        times.append(entries[0].timestamp)
    return max((t for t in times if stamp is None or t > stamp), default=None)


def _anchor(ctx: _Ctx, state: _State) -> str:
    """The time of the change that put the contact in its current milestone (trigger, history, stamp)."""
    milestone = state.get(ctx.p.milestone)
    times = [t.occurred_at for t in _milestone_triggers(ctx) if t.value == milestone]
    if times:
        return str(max(times))
    for entry in _history(ctx, ctx.p.milestone):
        if entry.value == milestone:
            return str(entry.timestamp)
    stamp = parse_ms(ctx.contact.get(ctx.p.milestone_changed_at))
    return "0" if stamp is None else str(stamp)


def _moves(ctx: _Ctx, state: _State, target: Target) -> dict[str, str]:
    """Updates that put the contact in `target`, stamped with now (the worker's own change)."""
    p, updates = ctx.p, {}
    if state.get(p.status) != target.status:
        updates.update({p.status: target.status, p.status_changed_at: _now(ctx)})
    if state.get(p.milestone) != target.milestone:
        updates.update({p.milestone: target.milestone, p.milestone_changed_at: _now(ctx)})
    return updates


def _task(ctx: _Ctx, kind: str, anchor: str, body: str, **fields: str) -> Action:
    template = ctx.policy.tasks.get(kind)
    subject = _render(template.subject, fields) if template else kind
    params = {
        "kind": kind,
        "subject": subject,
        "due_in_hours": str(template.due_in_hours if template else 24),
        "body": _sentence(body),
    }
    return Action(ActionType.CREATE_TASK, _key(kind, ctx, anchor), params)


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _render(template: str, fields: Mapping[str, str]) -> str:
    try:
        return template.format_map(_Blank(fields))
    except (ValueError, IndexError, KeyError, AttributeError):  # a malformed template is shown as is
        return template


def _label(ctx: _Ctx, milestone: str | None) -> str:
    return ctx.policy.milestone_labels.get(milestone or "", milestone or "(empty)")


def _status_label(ctx: _Ctx, status: str | None) -> str:
    found = ctx.policy.status(status)
    return found.label if found else (status or "(empty)")


def _number(text: str | None) -> float | None:
    try:
        value = float(text or "")
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _fmt(value: float) -> str:
    return f"{value:g}"


# -- T16, T1, T15: the state itself ---------------------------------------------------------------
def _t16_status_locked(ctx: _Ctx, state: _State) -> _Out:
    """T16: only the worker writes contact_status; anything else is reverted to its last value."""
    p, policy = ctx.p, ctx.policy
    current = state.get(p.status)
    if p.status in state.written:
        return None
    unknown = current is not None and policy.status(current) is None
    if not ctx.contact.has_history:
        return _t16_without_history(ctx, current, unknown)
    entries = _history(ctx, p.status)
    if not unknown and not (entries and _by_person(ctx, entries[0])):
        return None
    worker_wrote = (e.value for e in entries if not _by_person(ctx, e) and policy.status(e.value))
    target = next(worker_wrote, policy.initial.status)
    if target == current:
        return None
    anchor = str(entries[0].timestamp) if entries else "0"
    who = (entries[0].source_type or "someone") if entries else "someone"
    text = (
        f"T16: {p.status} is locked: {current or '(empty)'} set by {who} → reverted to {target}, "
        "the value the worker last wrote"
    )
    task = _task(ctx, "reverted_status", anchor, text, status=_status_label(ctx, target))
    return _Step("T16", text, {p.status: target, p.status_changed_at: _now(ctx)}, (task,), anchor=anchor)


def _t16_without_history(ctx: _Ctx, current: str | None, unknown: bool) -> _NeedsHistory | None:
    """A hand edit (a non-echo status trigger) or an unknown status can only be reverted with history."""
    status = ctx.p.status
    edited = any(t.kind is TriggerKind.PROPERTY_CHANGED and t.property == status for t in ctx.triggers)
    if not edited and not unknown:
        return None
    return _NeedsHistory(
        "T16",
        f"T16: {status} {current or '(empty)'} may have been set by someone else than the worker; "
        "reverting it needs its property history",
    )


def _t1_initial(ctx: _Ctx, state: _State) -> _Out:
    """T1: a contact without a status starts at the initial status/milestone."""
    if state.get(ctx.p.status) is not None:
        return None
    initial = ctx.policy.initial
    created = any(t.kind is TriggerKind.CREATED for t in ctx.triggers)
    text = f"T1: {'new contact' if created else 'contact'} without a status → {initial}"
    chosen = state.get(ctx.p.milestone)
    start = ctx.policy.status(initial.status)
    if chosen and start is not None and chosen in start.manual:
        # The worker never wrote this contact, so a person chose this milestone (e.g. created it
        # Qualified): keep it, and let its row apply next, as if set right after T1.
        target = Target(initial.status, chosen)
        return _Step("T1", f"{text}, keeping the milestone {chosen} a person chose", _moves(ctx, state, target),
                     anchor="initial")
    return _Step("T1", text, _moves(ctx, state, initial), anchor="initial")


def _t15_milestone_allowed(ctx: _Ctx, state: _State) -> _Out:
    """T15: a milestone not allowed in the status goes back to its previous allowed value."""
    p = ctx.p
    status = ctx.policy.status(state.get(p.status))
    milestone = state.get(p.milestone)
    if status is None or milestone in status.allowed:
        return None
    shown = milestone or "(empty)"
    if not ctx.contact.has_history:
        return _NeedsHistory(
            "T15",
            f"T15: milestone {shown} is not allowed in {status.value}; reverting it needs its property history",
        )
    target = next((e.value for e in _history(ctx, p.milestone) if e.value in status.allowed), status.default_milestone)
    text = f"T15: milestone {shown} is not allowed in {status.value} → reverted to {target}, task for the owner"
    task = _task(
        ctx,
        "reverted_milestone",
        _anchor(ctx, state),
        text,
        milestone=_label(ctx, milestone),
        status=status.label,
    )
    return _Step("T15", text, {p.milestone: target, p.milestone_changed_at: _now(ctx)}, (task,))


# -- a person's change lost to a concurrent worker write ---------------------------------------
def _restore_lost_change(ctx: _Ctx, state: _State) -> _Out:
    """Put back a person's milestone that a worker write decided without seeing it overwrote.

    HubSpot has no conditional write: a job reads, decides (its stamp, `milestone_changed_at`, is
    the decision time d), performs effects, then writes. A person who sets the milestone at p with
    d < p < the write w loses that change. With history this shows as: the newest milestone entry
    is the app's (w), the newest person's entry before it is newer than the stamp. The person's
    value is put back and the rules go on from it (their effects are keyed, so nothing doubles).
    Without history, a person's milestone event that is newer than the stamp and is not the
    current value asks for history.
    """
    p = ctx.p
    stamp = parse_ms(ctx.contact.get(p.milestone_changed_at))
    if stamp is None or p.milestone in state.written:
        return None
    current = state.get(p.milestone)
    if not ctx.contact.has_history:
        events = _milestone_triggers(ctx)
        if events and events[-1].occurred_at > stamp and (events[-1].value or None) != current:
            return _NeedsHistory(
                "restore",
                f"a person set the milestone {events[-1].value or '(empty)'} at "
                f"{format_ms(events[-1].occurred_at)}, after the last stamp, and it is now {current or '(empty)'}; "
                "telling whether a worker write overwrote it needs the milestone's history",
            )
        return None
    entries = _history(ctx, p.milestone)
    if not entries or _by_person(ctx, entries[0]):
        return None
    lost = next((e for e in entries[1:] if _by_person(ctx, e)), None)
    if lost is None or not stamp < lost.timestamp < entries[0].timestamp or lost.value == entries[0].value:
        return None
    state.restored = (lost.value, lost.timestamp)
    text = (
        f"a person set the milestone {lost.value or '(empty)'} at {format_ms(lost.timestamp)}, after the worker "
        f"decided (stamp {format_ms(stamp)}) and before it wrote {entries[0].value or '(empty)'} at "
        f"{format_ms(entries[0].timestamp)} → the person's {lost.value or '(empty)'} is restored"
    )
    return _Step("restore", text, {p.milestone: lost.value})


# -- T4: email health -----------------------------------------------------------------------------
def _health_facts(ctx: _Ctx) -> list[tuple[int, str]]:
    """(time, description) of every fact saying the address is unusable, oldest first."""
    return list(_memo(ctx, "health_facts", _find_health_facts))


def _find_health_facts(ctx: _Ctx) -> list[tuple[int, str]]:
    facts = []
    for t in ctx.triggers:
        label = health_fact(t, ctx.policy)
        if not label:
            continue
        superseded = t.property in ctx.contact.properties and not is_health_value(
            ctx.policy, t.property or "", ctx.contact.get(t.property or "")
        )
        if not (t.kind is TriggerKind.PROPERTY_CHANGED and superseded):
            facts.append((t.occurred_at, label))
    for name in ctx.policy.health_properties:  # from state alone: needs the property's history
        value = ctx.base.get(name)
        entry = next((e for e in _history(ctx, name) if is_health_value(ctx.policy, name, e.value)), None)
        if entry is not None and is_health_value(ctx.policy, name, value):
            facts.append((entry.timestamp, f"{name} is {value!r}"))
    return sorted(facts)


def _t4_email_health(ctx: _Ctx, state: _State) -> _Out:
    """T4: a fresh bounce/unsubscribe/spam report makes the milestone dead; a stale one is ignored."""
    p, dead = ctx.p, ctx.policy.dead_milestone
    facts = _health_facts(ctx)
    if not facts:
        return None
    if state.get(p.milestone) == dead:
        return _Note(f"{facts[-1][1]}: the milestone is already {dead}")
    latest = max(_person_milestone_times(ctx), default=None)
    stamp = parse_ms(ctx.contact.get(p.milestone_changed_at))
    fresh = [f for f in facts if latest is None or f[0] > latest]
    # Without history the stamp proves freshness only for a milestone the worker sets: a rep's
    # milestone may be newer than the stamp (not processed yet) and newer than the fact.
    status = ctx.policy.status(state.get(p.status))
    worker_set = status is not None and state.get(p.milestone) not in status.manual
    known = [f for f in fresh if ctx.contact.has_history or (worker_set and (stamp is None or stamp < f[0]))]
    if known:
        when, label = known[-1]
        text = f"T4: {label} at {format_ms(when)} → milestone {dead}, status stays {state.get(p.status)}"
        return _Step("T4", text, {p.milestone: dead, p.milestone_changed_at: _now(ctx)})
    if fresh:
        return _NeedsHistory(
            "T4",
            f"T4: {fresh[-1][1]} is older than the last milestone change; telling "
            "whether a person made that change needs the milestone's history",
        )
    assert latest is not None
    return _Note(
        f"{facts[-1][1]} at {format_ms(facts[-1][0])} is stale: a person changed the milestone "
        f"after it, at {format_ms(latest)} (ignored)"
    )


# -- T5-T14: what a rep set by hand ---------------------------------------------------------------
def _t5_dead_by_rep(ctx: _Ctx, state: _State) -> _Out:
    """T5: a person set dead → unsubscribe from all email (unless already opted out)."""
    if state.get(ctx.p.milestone) != ctx.policy.dead_milestone:
        return None
    when = _fresh_change(ctx, state)
    if when is None:
        return None
    if str(ctx.base.get(ctx.policy.optout_property)).lower() == "true":
        optout = ctx.policy.optout_property
        text = f"T5: a person set the milestone dead; {optout} is already true, so no unsubscribe"
        return _Step("T5", text, {ctx.p.milestone_changed_at: str(when)})
    unsubscribe = Action(ActionType.UNSUBSCRIBE_ALL, _key("unsubscribe_all", ctx, str(when)))
    text = "T5: a person set the milestone dead → unsubscribe the contact from all email"
    return _Step("T5", text, {ctx.p.milestone_changed_at: str(when)}, (unsubscribe,))


def _manual_row(ctx: _Ctx, state: _State) -> _Out:
    """T6-T14: the configured row for (status, milestone), if any."""
    row = ctx.policy.transition(state.get(ctx.p.status) or "", state.get(ctx.p.milestone) or "")
    if row is None:
        return None
    if row.reason_required and state.get(ctx.p.reason) not in ctx.policy.reasons.get(row.milestone, {}):
        return _hold(ctx, state, row)
    if row.to is not None and (row.to.status, row.to.milestone) != (row.status, row.milestone):
        return _move(ctx, state, row)
    return _stable(ctx, state, row)


def _hold(ctx: _Ctx, state: _State, row: ManualTransition) -> _Step | _NeedsHistory:
    """T8 (and T9 otherwise): no valid reason → keep the milestone, ask the owner for a reason."""
    name = "T8" if row.to is not None else row.row
    milestone = state.get(ctx.p.milestone)
    if not ctx.contact.has_history and not any(t.value == milestone for t in _milestone_triggers(ctx)):
        # The task's key is the time of the change to this milestone; without its event or history
        # the stamp may still be an older change's, and a later evaluation would key a second task.
        return _NeedsHistory(name, f"{name}: {row.milestone} is held; the time of that change needs history")
    reason = state.get(ctx.p.reason)
    got = f"{reason} is not a {row.milestone} reason" if reason else "none given"
    text = f"{name}: {row.milestone} in {row.status} needs a reason ({got}) → held, task for the owner"
    when = _fresh_change(ctx, state)
    updates = {ctx.p.milestone_changed_at: str(when)} if when is not None else {}
    task = _task(ctx, "reason_required", _anchor(ctx, state), text, milestone=_label(ctx, row.milestone))
    return _Step(name, text, updates, (task,))


def _move(ctx: _Ctx, state: _State, row: ManualTransition) -> _Step:
    """T6, T7, T11, T13: an unstable state: the row applies whoever set it."""
    assert row.to is not None
    anchor = _anchor(ctx, state)
    updates = _moves(ctx, state, row.to)
    when = _fresh_change(ctx, state)
    if ctx.p.milestone not in updates and when is not None:
        updates[ctx.p.milestone_changed_at] = str(when)  # T7 keeps the person's milestone and its time
    actions, phrases = _row_actions(ctx, state, row, anchor)
    reason = state.get(ctx.p.reason) if row.reason_required else None
    text = (
        f"{row.row}: {row.milestone} in {row.status}{f' with reason {reason}' if reason else ''} → {row.to}"
        + "".join(f", {phrase}" for phrase in phrases)
    )
    return _Step(row.row, text, updates, actions, anchor=anchor if ctx.p.status in updates else "")


def _stable(ctx: _Ctx, state: _State, row: ManualTransition) -> _Out:
    """T9, T10, T12, T14: stays; the effects (stamp, deal stage) only for a fresh change by a person."""
    when = _fresh_change(ctx, state)
    if when is None:
        return None
    actions, phrases = _row_actions(ctx, state, row, str(when))
    reason = state.get(ctx.p.reason) if row.reason_required else None
    text = (
        f"{row.row}: a person set {row.milestone}{f' with reason {reason}' if reason else ''} "
        f"→ stays {row.status}, stamped {format_ms(when)}" + "".join(f", {phrase}" for phrase in phrases)
    )
    return _Step(row.row, text, {ctx.p.milestone_changed_at: str(when)}, actions)


def _row_actions(ctx: _Ctx, state: _State, row: ManualTransition, anchor: str) -> tuple[tuple[Action, ...], list[str]]:
    """The configured side effects of `row` with their idempotency keys, and how to say them."""
    actions: list[Action] = []
    phrases: list[str] = []
    for name in row.actions:
        made = _ACTIONS.get(name, _no_action)(ctx, state, row, anchor)
        actions += made[0]
        phrases += made[1]
    return tuple(actions), phrases


_Made = tuple[list[Action], list[str]]


def _create_deal(ctx: _Ctx, state: _State, row: ManualTransition, anchor: str) -> _Made:
    milestone = row.to.milestone if row.to else row.milestone
    deal = Action(ActionType.CREATE_DEAL, _key("create_deal", ctx, "once"), {"milestone": milestone})
    if state.get(ctx.p.gmv_forecast) is not None:
        return [deal], ["create the deal"]
    text = f"{row.row}: the deal has no GMV forecast ({ctx.p.gmv_forecast} is empty)"
    return [deal, _task(ctx, "add_gmv_forecast", "once", text)], ["create the deal and a task to add the GMV forecast"]


def _update_deal_stage(ctx: _Ctx, state: _State, row: ManualTransition, anchor: str) -> _Made:
    stage = ctx.policy.deal_stages.get(row.milestone)
    if stage is None:
        return [], [f"no deal stage is configured for {row.milestone}"]
    params = {"stage": stage, "milestone": row.milestone}
    return [Action(ActionType.UPDATE_DEAL_STAGE, _key("update_deal_stage", ctx, f"{stage}@{anchor}"), params)], [
        f"open deal to {stage}"
    ]


def _reassign_owner(ctx: _Ctx, state: _State, row: ManualTransition, anchor: str) -> _Made:
    vertical = state.get(ctx.p.vertical) or ""
    assign = Action(
        ActionType.ASSIGN_OWNER, _key("assign_owner", ctx, anchor), {"mode": "reassign", "vertical": vertical}
    )
    text = f"{row.row}: reassigned to the next owner of vertical {vertical or '(default owners)'}"
    return [assign, _task(ctx, "new_mql", anchor, text)], [
        f"assign the next owner of {vertical or 'the default owners'}"
    ]


def _set_company_poc(ctx: _Ctx, state: _State, row: ManualTransition, anchor: str) -> _Made:
    return [Action(ActionType.SET_COMPANY_POC, _key("set_company_poc", ctx, anchor))], ["POC of its companies"]


def _unsubscribe_all(ctx: _Ctx, state: _State, row: ManualTransition, anchor: str) -> _Made:
    return [Action(ActionType.UNSUBSCRIBE_ALL, _key("unsubscribe_all", ctx, anchor))], ["unsubscribe from all email"]


def _no_action(ctx: _Ctx, state: _State, row: ManualTransition, anchor: str) -> _Made:
    return [], []


_ACTIONS: Mapping[str, Callable[[_Ctx, _State, ManualTransition, str], _Made]] = {
    "create_deal": _create_deal,
    "update_deal_stage": _update_deal_stage,
    "reassign_owner": _reassign_owner,
    "set_company_poc": _set_company_poc,
    "unsubscribe_all": _unsubscribe_all,
}


def _person_stamp(ctx: _Ctx, state: _State) -> _Out:
    """A person's milestone change with no row of its own is stamped with its own time."""
    when = _fresh_change(ctx, state)
    if when is None:
        return None
    text = f"a person set the milestone {state.get(ctx.p.milestone)} → stamped {format_ms(when)}"
    return _Step("", text, {ctx.p.milestone_changed_at: str(when)})


# -- T2, T3 (and T17): automatic ------------------------------------------------------------------
def _t2_campaign(ctx: _Ctx, state: _State) -> _Out:
    """T2: prospect/new that received a lead-generation campaign or joined a sequence."""
    p, source, target = ctx.p, ctx.policy.campaign_from, ctx.policy.campaign_to
    events, current = _memo(ctx, "campaign_facts", _campaign_facts)
    if not events and not current:
        return None
    if (state.get(p.status), state.get(p.milestone)) != (source.status, source.milestone):
        if not events:
            return None
        if state.get(p.milestone) == ctx.policy.dead_milestone:
            return _Note(f"T17: dead is sticky: {events[-1][1]} does not change a dead milestone", "T17")
        return _Note(f"{events[-1][1]}: T2 applies only to {source} (contact is {_pair(ctx, state)})")
    latest = max(_person_milestone_times(ctx), default=None)
    fresh = current + [label for when, label in events if latest is None or when > latest]
    if not fresh:
        return _Note(f"{events[-1][1]} is stale: a person changed the milestone after it (ignored)")
    return _Step("T2", f"T2: {fresh[-1]} → {target}", _moves(ctx, state, target))


def _campaign_facts(ctx: _Ctx) -> tuple[list[tuple[int, str]], list[str]]:
    """T2's evidence: (time, description) of the campaign events, and what the properties show."""
    events = [(t.occurred_at, label) for t in ctx.triggers if (label := campaign_fact(t, ctx.policy))]
    current = [label for name, value in ctx.base.items() if (label := campaign_value(ctx.policy, name, value))]
    return events, current


def _t3_score(ctx: _Ctx, state: _State) -> _Out:
    """T3: a prospect whose lead score reaches the threshold becomes mql/assigned with an owner."""
    policy = ctx.policy
    score = _number(state.get(policy.score_property))
    blocked = _t3_blocked(ctx, state, score)
    if blocked is not None or score is None:
        return blocked
    vertical = state.get(ctx.p.vertical) or ""
    text = (
        f"T3: score {_fmt(score)} reached the threshold {_fmt(policy.score_threshold)} → {policy.score_to}, "
        f"assign an owner ({vertical or 'default owners'}) and a task to acknowledge"
    )
    params = {"mode": "if_unowned", "vertical": vertical}
    assign = Action(ActionType.ASSIGN_OWNER, _key("assign_owner", ctx, "once"), params)
    actions = (assign, _task(ctx, "new_mql", "once", text))
    return _Step("T3", text, _moves(ctx, state, policy.score_to), actions, anchor="score")


def _t3_blocked(ctx: _Ctx, state: _State, score: float | None) -> _Note | None:
    """Why T3 does not apply (a note only when the score was signalled or matters), else None."""
    policy, raw = ctx.policy, state.get(ctx.policy.score_property)
    status = state.get(ctx.p.status)
    signalled = any(t.property == policy.score_property for t in ctx.triggers)
    eligible = status in policy.score_from_statuses
    if score is None:
        return _Note(f"score {raw!r} is not a number") if signalled and raw else _SILENT
    if score < policy.score_threshold:
        below = f"score {_fmt(score)} is below the threshold {_fmt(policy.score_threshold)}"
        return _Note(below) if signalled or eligible else _SILENT
    if not eligible:
        only = ", ".join(policy.score_from_statuses)
        text = f"score {_fmt(score)} does not apply: T3 moves only {only} (contact is {status})"
        return _Note(text) if signalled else _SILENT
    if state.get(ctx.p.milestone) == policy.dead_milestone:
        return _Note(f"T17: dead is sticky: score {_fmt(score)} does not move a dead {status}", "T17")
    return None


_RULES: tuple[Callable[[_Ctx, _State], _Out], ...] = (
    _t16_status_locked,
    _t1_initial,
    _restore_lost_change,
    _t15_milestone_allowed,
    _t4_email_health,
    _t5_dead_by_rep,
    _manual_row,
    _person_stamp,
    _t2_campaign,
    _t3_score,
)
