"""Load and validate config.yaml plus secrets from the environment: the one settings reader.

`load_settings()` returns a frozen `Settings`; every problem becomes a `ConfigError` whose
message names the file, the key and what is wrong. Secrets never come from the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rules.policy import (
    CompanyProps,
    ContactProps,
    ManualTransition,
    Policy,
    StatusDef,
    Target,
    TaskTemplate,
)
from worker.errors import ConfigError

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config.yaml"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_HUBSPOT_BASE_URL = "https://api.hubapi.com"
ACTION_TYPES = {"create_deal", "update_deal_stage", "reassign_owner", "set_company_poc", "unsubscribe_all"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Status(_Strict):
    value: str
    label: str
    default_milestone: str
    automatic: list[str]
    manual: list[str]


class _Transition(_Strict):
    row: str
    status: str
    milestone: str
    to: str | None = None
    reason: bool = False
    actions: list[str] = Field(default_factory=list)


class _Score(_Strict):
    property: str
    threshold: float
    from_statuses: list[str]
    to: str


class _Campaigns(_Strict):
    from_: str = Field(alias="from")
    to: str
    lead_gen_campaign_ids: Literal["all"] | list[int | str]
    delivered_properties: list[str]
    sequence_property: str


class _EventType(_Strict):
    categories: list[str] = Field(default_factory=list)


class _Health(_Strict):
    properties: dict[str, list[str]]
    event_types: dict[str, _EventType]


class _Routing(_Strict):
    verticals: dict[str, list[str]]
    default_owners: list[str]

    @field_validator("default_owners")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("needs at least one owner id")
        return value


class _Deals(_Strict):
    pipeline: str
    stages: dict[str, str]
    closed_stages: list[str]
    name_template: str


class _Task(_Strict):
    subject: str
    due_in_hours: int = Field(ge=0)


class _Webhooks(_Strict):
    signature_max_age_s: int = Field(300, gt=0)
    allow_legacy_signatures: bool = False
    trust_proxy: bool = False
    max_events: int = Field(100, gt=0)
    max_body_bytes: int = Field(1_000_000, gt=0)
    dedupe_ttl_s: int = Field(172_800, ge=86_400)


class _RateLimit(_Strict):
    requests: int = Field(100, gt=0)
    per_s: float = Field(10, gt=0)
    margin: float = Field(0.1, ge=0, lt=1)
    search_per_s: float = Field(5, gt=0)


class _Reaper(_Strict):
    """The abandoned-job reaper that `lifecycle worker` runs (worker/reaper.py)."""

    enabled: bool = True
    interval_s: float = Field(1.0, gt=0, le=60)
    # RQ refreshes a worker's heartbeat every 30 s (busy or idle, with worker_ttl=45): older
    # than this, the worker is gone. Below 40 s a slow heartbeat could look like a death.
    stale_after_s: float = Field(60.0, ge=40)
    max_replays: int = Field(3, ge=0)
    overdue_after_s: float = Field(5.0, gt=0)


class _Worker(_Strict):
    queue: str = "hubspot"
    job_timeout_s: int = Field(300, gt=0)
    retry_intervals_s: list[int] = Field(default_factory=lambda: [10, 30, 60, 120])
    failure_ttl_s: int = Field(2_592_000, gt=0)
    result_ttl_s: int = Field(3600, ge=0)
    request_timeout_s: tuple[float, float] = (3.0, 15.0)
    http_retry_stop_s: float = Field(60, gt=0)
    http_concurrency: int = Field(8, ge=1, le=16)  # a job's independent batch calls in flight at once
    rate_limit: _RateLimit = Field(default_factory=_RateLimit)
    lock_ttl_s: int = Field(30, gt=0)
    coalesce_max_contacts: int = Field(1000, ge=1)
    # A job that starts while the queue is still growing (a burst arriving) waits up to this
    # long for it to stop growing before it coalesces (worker/coalesce.py); 0 turns it off.
    coalesce_wait_s: float = Field(15.0, ge=0, le=60)
    reaper: _Reaper = Field(default_factory=_Reaper)


class _Group(_Strict):
    name: str
    label: str


class _Properties(_Strict):
    contact: dict[str, str]
    company: dict[str, str]
    group: _Group


class _Config(_Strict):
    app_id: int | str
    portal_id: int
    properties: _Properties
    statuses: list[_Status]
    milestones: dict[str, str]
    dead_milestone: str
    initial: dict[str, str]
    reasons: dict[str, dict[str, str]]
    manual_transitions: list[_Transition]
    score: _Score
    campaigns: _Campaigns
    email_health: _Health
    routing: _Routing
    deals: _Deals
    tasks: dict[str, _Task]
    webhooks: _Webhooks = Field(default_factory=_Webhooks)
    worker: _Worker = Field(default_factory=_Worker)


@dataclass(frozen=True)
class Settings:
    """Validated configuration. Secrets are excluded from repr."""

    config_path: Path
    policy: Policy
    portal_id: int
    verticals: Mapping[str, tuple[str, ...]]
    default_owners: tuple[str, ...]
    deal_pipeline: str
    deal_stages: Mapping[str, str]
    deal_closed_stages: tuple[str, ...]
    deal_name_template: str
    property_group: tuple[str, str]  # (name, label)
    webhooks: _Webhooks
    worker: _Worker
    hubspot_base_url: str
    redis_url: str = field(default="", repr=False)  # may carry a password
    access_token: str | None = field(default=None, repr=False)
    client_secret: str | None = field(default=None, repr=False)

    @property
    def app_id(self) -> str:
        return self.policy.app_id

    def require(self, *names: str) -> None:
        """Raise ConfigError naming every missing secret among `names` (env var names)."""
        values = {"HUBSPOT_ACCESS_TOKEN": self.access_token, "HUBSPOT_CLIENT_SECRET": self.client_secret}
        missing = [n for n in names if not values.get(n)]
        if missing:
            raise ConfigError(f"missing environment variable(s): {', '.join(missing)}")


def config_path(path: str | Path | None = None, environ: Mapping[str, str] = os.environ) -> Path:
    """The config file to use: `path`, else $LIFECYCLE_CONFIG, else the bundled config.yaml."""
    if path:
        return Path(path)
    if environ.get("LIFECYCLE_CONFIG"):
        return Path(environ["LIFECYCLE_CONFIG"])
    return DEFAULT_CONFIG


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] = os.environ) -> Settings:
    """Read, validate and freeze the configuration. Raises ConfigError."""
    file = config_path(path, environ)
    raw = _read_yaml(file)
    try:
        model = _Config.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{file}: {key}: {first['msg']}{more}") from None
    errors = _cross_check(model)
    if not str(model.app_id).isdigit():
        errors.insert(0, f"app_id: must be a number (HubSpot's app id), got {model.app_id!r}")
    if errors:
        raise ConfigError(f"{file}: " + f"\n{file}: ".join(errors))
    app_id = str(environ.get("HUBSPOT_APP_ID") or model.app_id)
    if not app_id.isdigit():
        raise ConfigError(f"HUBSPOT_APP_ID: must be a number, got {app_id!r}")
    return Settings(
        config_path=file,
        policy=_policy(model, app_id),
        portal_id=model.portal_id,
        verticals={k: tuple(v) for k, v in model.routing.verticals.items()},
        default_owners=tuple(model.routing.default_owners),
        deal_pipeline=model.deals.pipeline,
        deal_stages=dict(model.deals.stages),
        deal_closed_stages=tuple(model.deals.closed_stages),
        deal_name_template=model.deals.name_template,
        property_group=(model.properties.group.name, model.properties.group.label),
        webhooks=model.webhooks,
        worker=model.worker,
        redis_url=environ.get("REDIS_URL") or DEFAULT_REDIS_URL,
        hubspot_base_url=(environ.get("HUBSPOT_BASE_URL") or DEFAULT_HUBSPOT_BASE_URL).rstrip("/"),
        access_token=environ.get("HUBSPOT_ACCESS_TOKEN") or None,
        client_secret=environ.get("HUBSPOT_CLIENT_SECRET") or None,
    )


def _read_yaml(file: Path) -> Any:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{file}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: (top level): must be a mapping of keys")
    return raw


def _cross_check(m: _Config) -> list[str]:
    """Semantic checks pydantic cannot express; each message is 'key: what is wrong'."""
    errors: list[str] = []
    known = set(m.milestones)
    statuses = [s.value for s in m.statuses]
    allowed: dict[str, set[str]] = {}
    if not statuses:
        errors.append("statuses: needs at least one status")
    for dup in {v for v in statuses if statuses.count(v) > 1}:
        errors.append(f"statuses: duplicate value {dup!r}")
    for i, s in enumerate(m.statuses):
        if not s.automatic and not s.manual:
            errors.append(f"statuses[{i}] ({s.value}): has no milestones")
        for kind in ("automatic", "manual"):
            values = getattr(s, kind)
            for dup in {v for v in values if values.count(v) > 1}:
                errors.append(f"statuses[{i}].{kind}: duplicate milestone {dup!r}")
            for v in values:
                if v not in known:
                    errors.append(f"statuses[{i}].{kind}: unknown milestone {v!r}")
        allowed[s.value] = set(s.automatic) | set(s.manual)
        if s.default_milestone not in allowed[s.value]:
            errors.append(f"statuses[{i}].default_milestone: {s.default_milestone!r} is not allowed in {s.value}")
        if m.dead_milestone not in allowed[s.value]:
            errors.append(f"statuses[{i}]: dead milestone {m.dead_milestone!r} must be allowed in {s.value}")
    if m.dead_milestone not in known:
        errors.append(f"dead_milestone: unknown milestone {m.dead_milestone!r}")

    def check_target(key: str, text: str | None, *, need_auto: bool = False) -> None:
        if text is None:
            return
        status, _, milestone = text.partition("/")
        if status not in allowed:
            errors.append(f"{key}: unknown status {status!r}")
        elif milestone not in allowed[status]:
            errors.append(f"{key}: milestone {milestone!r} is not allowed in {status}")

    check_target("initial", f"{m.initial.get('status')}/{m.initial.get('milestone')}")
    seen: set[tuple[str, str]] = set()
    for i, t in enumerate(m.manual_transitions):
        key = f"manual_transitions[{i}] ({t.row})"
        if t.status not in allowed:
            errors.append(f"{key}.status: unknown status {t.status!r}")
        elif t.milestone not in allowed[t.status]:
            errors.append(f"{key}.milestone: unknown milestone {t.milestone!r} in {t.status}")
        if (t.status, t.milestone) in seen:
            errors.append(f"{key}: duplicate transition for {t.status}/{t.milestone}")
        seen.add((t.status, t.milestone))
        check_target(f"{key}.to", t.to)
        if t.reason and t.milestone not in m.reasons:
            errors.append(f"{key}.reason: no reasons are configured for milestone {t.milestone!r}")
        for a in t.actions:
            if a not in ACTION_TYPES:
                errors.append(f"{key}.actions: unknown action {a!r} (one of {', '.join(sorted(ACTION_TYPES))})")
    for milestone, options in m.reasons.items():
        if milestone not in known:
            errors.append(f"reasons: unknown milestone {milestone!r}")
        if not options:
            errors.append(f"reasons.{milestone}: has no reasons")
    all_reasons = [r for opts in m.reasons.values() for r in opts]
    for dup in {r for r in all_reasons if all_reasons.count(r) > 1}:
        errors.append(f"reasons: duplicate reason value {dup!r}")
    for s in m.score.from_statuses:
        if s not in allowed:
            errors.append(f"score.from_statuses: unknown status {s!r}")
    check_target("score.to", m.score.to)
    check_target("campaigns.from", m.campaigns.from_)
    check_target("campaigns.to", m.campaigns.to)
    for milestone in m.deals.stages:
        if milestone not in known:
            errors.append(f"deals.stages: unknown milestone {milestone!r}")
    for vertical, owners in m.routing.verticals.items():
        if not owners:
            errors.append(f"routing.verticals.{vertical}: needs at least one owner id")
    for required in ("new_mql", "reason_required", "add_gmv_forecast", "reverted_milestone", "reverted_status"):
        if required not in m.tasks:
            errors.append(f"tasks: missing task template {required!r}")
    for key in ("status", "milestone", "reason", "status_changed_at", "milestone_changed_at"):
        if key not in m.properties.contact:
            errors.append(f"properties.contact: missing {key!r}")
    return errors


def _target(text: str) -> Target:
    status, _, milestone = text.partition("/")
    return Target(status, milestone)


def _policy(m: _Config, app_id: str) -> Policy:
    contact_fields = set(ContactProps.__dataclass_fields__)
    company_fields = set(CompanyProps.__dataclass_fields__)
    ids = m.campaigns.lead_gen_campaign_ids
    return Policy(
        app_id=app_id,
        statuses=tuple(
            StatusDef(s.value, s.label, rank, s.default_milestone, tuple(s.automatic), tuple(s.manual))
            for rank, s in enumerate(m.statuses, start=1)
        ),
        milestone_labels=dict(m.milestones),
        dead_milestone=m.dead_milestone,
        initial=Target(m.initial["status"], m.initial["milestone"]),
        reasons={k: dict(v) for k, v in m.reasons.items()},
        manual_transitions=tuple(
            ManualTransition(t.row, t.status, t.milestone, _target(t.to) if t.to else None, t.reason,
                             tuple(t.actions))
            for t in m.manual_transitions
        ),
        score_property=m.score.property,
        score_threshold=m.score.threshold,
        score_from_statuses=tuple(m.score.from_statuses),
        score_to=_target(m.score.to),
        campaign_from=_target(m.campaigns.from_),
        campaign_to=_target(m.campaigns.to),
        lead_gen_campaign_ids=None if ids == "all" else frozenset(str(i) for i in ids),
        delivered_properties=tuple(m.campaigns.delivered_properties),
        sequence_property=m.campaigns.sequence_property,
        health_properties={k: tuple(v) for k, v in m.email_health.properties.items()},
        health_event_types={k: tuple(v.categories) for k, v in m.email_health.event_types.items()},
        deal_stages=dict(m.deals.stages),
        tasks={k: TaskTemplate(t.subject, t.due_in_hours) for k, t in m.tasks.items()},
        contact=ContactProps(**{k: v for k, v in m.properties.contact.items() if k in contact_fields}),
        company=CompanyProps(**{k: v for k, v in m.properties.company.items() if k in company_fields}),
    )
