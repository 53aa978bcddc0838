"""Values the rules take and give: triggers, contact snapshots and decisions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class TriggerKind(StrEnum):
    """What happened, as far as the rules care."""

    CREATED = "created"  # contact.creation
    PROPERTY_CHANGED = "property_changed"  # contact.propertyChange
    EMAIL_EVENT = "email_event"  # an Email Events API record (DELIVERED, BOUNCE, ...)
    ASSOCIATION_CHANGED = "association_changed"  # contact. or company.associationChange (companies)
    MERGED = "merged"  # contact.merge: recompute the survivor
    DELETED = "deleted"  # contact.deletion / privacyDeletion
    RECONCILE = "reconcile"  # no event: look at the contact as it is


class ActionType(StrEnum):
    """Side effects a Decision asks the worker to perform (wire values of `explain --json`)."""

    ASSIGN_OWNER = "assign_owner"
    CREATE_DEAL = "create_deal"
    UPDATE_DEAL_STAGE = "update_deal_stage"
    UNSUBSCRIBE_ALL = "unsubscribe_all"
    CREATE_TASK = "create_task"
    ROLLUP_COMPANIES = "rollup_companies"
    SET_COMPANY_POC = "set_company_poc"


@dataclass(frozen=True)
class Trigger:
    """One normalised event about one contact.

    `by_self` is True for the echo of this app's own write (changeSource INTEGRATION and
    sourceId == app id); everything else counts as a person or HubSpot itself ("manual").
    """

    kind: TriggerKind
    occurred_at: int  # ms since the epoch
    contact_id: str | None = None
    email: str | None = None  # email events name the contact by address
    property: str | None = None
    value: str | None = None
    by_self: bool = False
    change_source: str | None = None
    source_id: str | None = None
    email_type: str | None = None  # DELIVERED, BOUNCE, STATUSCHANGE, SPAMREPORT, ...
    email_category: str | None = None  # bounce category
    campaign_id: str | None = None
    unsubscribed: bool = False  # STATUSCHANGE that unsubscribes
    merged_ids: tuple[str, ...] = ()
    event_key: str = ""  # stable id of the source event (dedupe, idempotency keys)
    association_type: str | None = None  # contact.associationChange: CONTACT_TO_COMPANY, ...
    related_id: str | None = None  # the other object of an association change (e.g. the company)
    association_removed: bool = False


@dataclass(frozen=True)
class HistoryEntry:
    """One entry of HubSpot's property history (newest first in HubSpot's answers)."""

    value: str
    timestamp: int  # ms
    source_type: str | None = None
    source_id: str | None = None


@dataclass(frozen=True)
class Contact:
    """A contact as HubSpot returns it: string properties and optional history."""

    id: str
    properties: Mapping[str, str | None]
    history: Mapping[str, tuple[HistoryEntry, ...]] = field(default_factory=dict)
    has_history: bool = False  # history was requested (an empty one then means "never set")

    def get(self, name: str) -> str | None:
        value = self.properties.get(name)
        return value if value not in (None, "") else None


@dataclass(frozen=True)
class Action:
    """A side effect. `key` is stable across redelivery and replay: the worker performs
    an action with a given key at most once."""

    type: ActionType
    key: str
    params: Mapping[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, str]:
        return {"type": str(self.type), "key": self.key, **dict(self.params)}


@dataclass(frozen=True)
class Decision:
    """What to do with one contact: property updates, side effects, why.

    An empty Decision (no updates, no actions) is "nothing to do", with a reason.
    `needs_history` asks the worker to re-read the contact with property history
    (for a revert) and decide again; the other fields are then provisional.
    """

    updates: Mapping[str, str]
    actions: tuple[Action, ...]
    reason: str
    rows: tuple[str, ...] = ()
    needs_history: bool = False
    skip: bool = False  # the contact is gone (deleted): nothing to write

    @property
    def is_noop(self) -> bool:
        return not self.updates and not self.actions

    def as_json(self) -> dict[str, object]:
        return {
            "updates": dict(self.updates),
            "actions": [a.as_json() for a in self.actions],
            "reason": self.reason,
            "rows": list(self.rows),
        }


@dataclass(frozen=True)
class ContactRollupInput:
    """What the company rollup needs of each associated contact."""

    id: str
    status: str | None
    lead_gen_suppressed: str | None
    # True when another company of this contact is a customer account: the contact stays
    # suppressed even if this company is not (a contact may belong to several companies).
    suppressed_elsewhere: bool = False


@dataclass(frozen=True)
class RollupDecision:
    """A company's new account status and the contacts' suppression flags to write."""

    company_id: str
    company_updates: Mapping[str, str]
    contact_updates: Mapping[str, Mapping[str, str]]  # contact id -> {lead_gen_suppressed: "true"}
    reason: str
