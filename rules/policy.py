"""The rules' view of config.yaml: frozen, validated elsewhere (worker.settings), stdlib only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple


@dataclass(frozen=True)
class StatusDef:
    """One contact status and the milestones allowed in it (spec §2)."""

    value: str
    label: str
    rank: int
    default_milestone: str
    automatic: tuple[str, ...]
    manual: tuple[str, ...]

    @property
    def allowed(self) -> frozenset[str]:
        return frozenset(self.automatic) | frozenset(self.manual)


@dataclass(frozen=True)
class Target:
    """A (status, milestone) pair, written "status/milestone" in config."""

    status: str
    milestone: str

    def __str__(self) -> str:
        return f"{self.status}/{self.milestone}"


@dataclass(frozen=True)
class ManualTransition:
    """What a rep's milestone choice does in a status (spec T5-T14)."""

    row: str
    status: str
    milestone: str
    to: Target | None = None
    reason_required: bool = False
    actions: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContactProps:
    """Internal names of the contact properties the rules read and write."""

    status: str = "contact_status"
    milestone: str = "contact_milestone"
    reason: str = "milestone_reason"
    status_changed_at: str = "contact_status_changed_at"
    milestone_changed_at: str = "contact_milestone_changed_at"
    lead_gen_suppressed: str = "lead_gen_suppressed"
    vertical: str = "vertical"
    gmv_forecast: str = "gmv_forecast"
    email: str = "email"
    owner: str = "hubspot_owner_id"
    first_name: str = "firstname"
    last_name: str = "lastname"


@dataclass(frozen=True)
class CompanyProps:
    """Internal names of the company properties the rollup writes."""

    account_status: str = "account_status"
    poc_contact_id: str = "poc_contact_id"
    name: str = "name"


@dataclass(frozen=True)
class TaskTemplate:
    subject: str
    due_in_hours: int


class HealthValues(NamedTuple):
    any: bool
    values: frozenset[str]


@dataclass(frozen=True)
class Policy:
    """Everything the rules need from config.yaml, and nothing secret."""

    app_id: str
    statuses: tuple[StatusDef, ...]
    milestone_labels: Mapping[str, str]
    dead_milestone: str
    initial: Target
    reasons: Mapping[str, Mapping[str, str]]  # milestone -> {reason value: label}
    manual_transitions: tuple[ManualTransition, ...]
    score_property: str
    score_threshold: float
    score_from_statuses: tuple[str, ...]
    score_to: Target
    campaign_from: Target
    campaign_to: Target
    lead_gen_campaign_ids: frozenset[str] | None  # None: every marketing email is lead-gen
    delivered_properties: tuple[str, ...]
    sequence_property: str
    health_properties: Mapping[str, tuple[str, ...]]  # property -> values that count ("*" any)
    health_event_types: Mapping[str, tuple[str, ...]]  # email event type -> categories (empty: any)
    deal_stages: Mapping[str, str]  # milestone -> deal stage
    tasks: Mapping[str, TaskTemplate]
    contact: ContactProps = field(default_factory=ContactProps)
    company: CompanyProps = field(default_factory=CompanyProps)
    # HubSpot's "opted out of all email" flag: T5 skips the unsubscribe when it is already "true".
    optout_property: str = "hs_email_optout"

    # -- lookups the rules use -------------------------------------------------------------
    @cached_property
    def health_values(self) -> Mapping[str, HealthValues]:
        """`health_properties` as the rules ask it, at every step of every contact: any value
        ("*"), or one of these (lowercased)."""
        return {name: HealthValues("*" in wanted, frozenset(w.lower() for w in wanted))
                for name, wanted in self.health_properties.items()}

    def status(self, value: str | None) -> StatusDef | None:
        """The status definition for `value`, or None when unknown or empty."""
        for status in self.statuses:
            if status.value == value:
                return status
        return None

    def rank(self, value: str | None) -> int:
        """Rank of a status (1 = lowest); 0 for unknown or empty."""
        status = self.status(value)
        return status.rank if status else 0

    def transition(self, status: str, milestone: str) -> ManualTransition | None:
        """The manual transition row for a rep setting `milestone` in `status`, if any."""
        for row in self.manual_transitions:
            if row.status == status and row.milestone == milestone:
                return row
        return None

    @property
    def status_values(self) -> tuple[str, ...]:
        return tuple(s.value for s in self.statuses)

    @property
    def read_properties(self) -> tuple[str, ...]:
        """Every contact property the rules may look at: what the worker reads."""
        c = self.contact
        names = [
            c.status,
            c.milestone,
            c.reason,
            c.status_changed_at,
            c.milestone_changed_at,
            c.lead_gen_suppressed,
            c.vertical,
            c.gmv_forecast,
            c.email,
            c.owner,
            c.first_name,
            c.last_name,
            self.score_property,
            self.sequence_property,
            *self.delivered_properties,
            *self.health_properties,
            self.optout_property,
        ]
        return tuple(dict.fromkeys(names))

    @property
    def trigger_properties(self) -> frozenset[str]:
        """Contact properties whose change can change a Decision: webhooks for any other
        property are dropped at the door."""
        c = self.contact
        return frozenset(
            [
                c.status,
                c.milestone,
                c.reason,
                c.vertical,
                c.gmv_forecast,
                self.score_property,
                self.sequence_property,
                *self.delivered_properties,
                *self.health_properties,
            ]
        )

    @property
    def history_properties(self) -> tuple[str, ...]:
        """Properties whose history the rules use for reverts and freshness."""
        c = self.contact
        return tuple(dict.fromkeys([c.status, c.milestone, *self.health_properties]))
