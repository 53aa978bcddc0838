"""mermaid(): the lifecycle as a Mermaid stateDiagram-v2, generated from the Policy (config.yaml).

Statuses are composite states holding their milestones; transitions between statuses are
edges labelled with the spec row and the milestone that triggers them; same-status rows are
edges between milestones. Mermaid forbids edges between states inside different composites,
so a status change is drawn status to status.
"""

from __future__ import annotations

from rules.policy import Policy, StatusDef


def mermaid(policy: Policy) -> str:
    """The state machine of `policy` as Mermaid `stateDiagram-v2` text (ends with a newline)."""
    lines = ["stateDiagram-v2", "    direction LR"]
    lines.append(f"    [*] --> {policy.initial.status} : T1 contact created")
    for status in policy.statuses:
        lines += _composite(policy, status)
    lines += _status_edges(policy)
    lines += _notes(policy)
    return "\n".join(lines) + "\n"


def _sid(status: str, milestone: str) -> str:
    return f"{status}__{milestone}"


def _clean(text: str) -> str:
    """Label text Mermaid cannot misread (no colons, semicolons, braces or quotes)."""
    for bad, good in ((":", " "), (";", ","), ("{", "("), ("}", ")"), ('"', "'"), ("#", "no. ")):
        text = text.replace(bad, good)
    return text


def _composite(policy: Policy, status: StatusDef) -> list[str]:
    """One status as a composite state: its milestones and the rows that stay inside it."""
    lines = [f"    state {status.value} {{"]
    automatic = set(status.automatic)
    for milestone in dict.fromkeys(status.automatic + status.manual):
        label = _clean(policy.milestone_labels.get(milestone, milestone))
        mark = " (auto)" if milestone in automatic else ""
        lines.append(f'        state "{label}{mark}" as {_sid(status.value, milestone)}')
    lines.append(f"        [*] --> {_sid(status.value, status.default_milestone)}")
    lines += [f"        {edge}" for edge in _inner_edges(policy, status)]
    lines.append("    }")
    return lines


def _inner_edges(policy: Policy, status: StatusDef) -> list[str]:
    s, edges = status.value, []
    if policy.campaign_from.status == s == policy.campaign_to.status:
        edges.append(
            f"{_sid(s, policy.campaign_from.milestone)} --> {_sid(s, policy.campaign_to.milestone)} "
            ": T2 lead-gen email or sequence"
        )
    reason_rows = [r for r in policy.manual_transitions if r.status == s and r.to is None and r.reason_required]
    for row in policy.manual_transitions:
        if row.status != s:
            continue
        if row.to is not None and row.to.status == s:
            label = f"{row.row} {_actions(row.actions)}"
            edges.append(f"{_sid(s, row.milestone)} --> {_sid(s, row.to.milestone)} : {label}")
        elif row.to is None and row.reason_required:
            edges += [
                f"{_sid(s, other.milestone)} --> {_sid(s, row.milestone)} : {row.row} with a reason"
                for other in reason_rows
                if other.milestone != row.milestone
            ]
        elif row.to is None and row.milestone != status.default_milestone:
            edges.append(
                f"{_sid(s, status.default_milestone)} --> {_sid(s, row.milestone)} : {row.row} by a rep"
                + (f", {_actions(row.actions)}" if row.actions else "")
            )
    return edges


def _actions(actions: tuple[str, ...]) -> str:
    return _clean(", ".join(a.replace("_", " ") for a in actions))


def _status_edges(policy: Policy) -> list[str]:
    """Edges between statuses, one per (from, to) with every row that takes it."""
    labels: dict[tuple[str, str], list[str]] = {}
    for status in policy.score_from_statuses:
        if status != policy.score_to.status:
            limit = f"{policy.score_threshold:g}"
            labels.setdefault((status, policy.score_to.status), []).append(f"T3 score ≥ {limit}")
    for row in policy.manual_transitions:
        if row.to is not None and row.to.status != row.status:
            reason = " + reason" if row.reason_required else ""
            labels.setdefault((row.status, row.to.status), []).append(f"{row.row} {row.milestone}{reason}")
    return [f"    {a} --> {b} : {_clean(' / '.join(dict.fromkeys(texts)))}" for (a, b), texts in labels.items()]


def _notes(policy: Policy) -> list[str]:
    dead = policy.dead_milestone
    top = max(policy.statuses, key=lambda s: s.rank).value if policy.statuses else policy.initial.status
    return [
        f"    note right of {policy.initial.status}",
        f"        Any status. milestone {dead} on a hard bounce, unsubscribe or spam report (T4)",
        f"        or set by a rep, who unsubscribes the contact (T5). {dead} is sticky for T2 and T3 (T17).",
        "        A milestone not allowed in the status is reverted (T15), a hand-edited status too (T16).",
        "    end note",
        f"    note right of {top} : nothing leaves {top}, the POC of its companies (T13)",
    ]
