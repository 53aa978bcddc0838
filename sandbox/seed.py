"""Build a portal in its seed state: standard properties, owners, the deal pipeline ("none"), plus the
lifecycle properties and ~50 companies / ~500 contacts for "demo". Seeding emits no webhooks."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from .commprefs import CommPrefs
from .config import SandboxConfig
from .directory import Directory
from .email_events import EmailEvents
from .objecttypes import OBJECT_TYPES
from .schema import PropertySchema
from .standard_props import (
    GROUPS,
    LIFECYCLE_COMPANY,
    LIFECYCLE_CONTACT,
    LIFECYCLE_GROUP,
    OWNER,
    PIPELINES,
    READ_ONLY,
    STAGES,
    STANDARD,
    Spec,
    options,
)
from .store import Store
from .subscriptions import Subscriptions

__all__ = ["Portal", "build_portal", "define_properties"]


@dataclass
class Portal:
    """Everything `POST /_sandbox/reset` puts back to the seed state."""

    schema: PropertySchema
    store: Store
    directory: Directory
    commprefs: CommPrefs
    emails: EmailEvents
    subscriptions: Subscriptions


def define_properties(
    schema: PropertySchema,
    object_type: str,
    specs: tuple[Spec, ...],
    directory: Directory,
    hubspot_defined: bool,
) -> None:
    """Create each (name, label, type, fieldType, group, options) spec; placeholder options are resolved."""
    for name, label, ptype, field_type, group, opts in specs:
        placeholder = opts[0][0] if opts else None
        resolved = {
            OWNER: directory.owner_options,
            PIPELINES: directory.pipeline_options,
            STAGES: directory.stage_options,
        }.get(placeholder or "")
        body = {
            "name": name,
            "label": label,
            "type": ptype,
            "fieldType": field_type,
            "groupName": group,
            "options": resolved() if resolved else options(opts),
        }
        extra = {"referencedObjectType": "OWNER", "externalOptions": True} if placeholder == OWNER else None
        schema.create(
            object_type, body, hubspot_defined=hubspot_defined, read_only_value=name in READ_ONLY, extra=extra
        )


def build_portal(config: SandboxConfig, event_ids: Iterator[int] | None = None) -> Portal:
    """A fresh portal for `config` (deterministic from config.random_seed)."""
    directory = Directory()
    schema = PropertySchema(list(OBJECT_TYPES))
    for object_type, groups in GROUPS.items():
        for i, (name, label) in enumerate(groups):
            schema.create_group(object_type, {"name": name, "label": label, "displayOrder": i})
        define_properties(schema, object_type, STANDARD[object_type], directory, hubspot_defined=True)
    store = Store(schema)
    portal = Portal(
        schema,
        store,
        directory,
        CommPrefs(),
        EmailEvents(config.portal_id, config.app_id),
        Subscriptions(
            config.portal_id,
            config.app_id,
            config.webhook_url,
            config.webhook_max_concurrency,
            event_ids=event_ids,
        ),
    )
    if config.seed == "demo":
        for object_type, specs in (("contacts", LIFECYCLE_CONTACT), ("companies", LIFECYCLE_COMPANY)):
            schema.create_group(object_type, {"name": LIFECYCLE_GROUP[0], "label": LIFECYCLE_GROUP[1]})
            define_properties(schema, object_type, specs, directory, hubspot_defined=False)
        from .demo import populate  # deferred: only demo portals need the generator

        with store.silenced():
            populate(store, config, random.Random(config.random_seed))
    return portal
