"""Parse, validate and route webhook bodies: pure, no I/O.

`Router.route_hubspot(body)` and `Router.route_email(body)` turn a raw request body into the
events worth a job (each with its dedupe key and its place in the job payload) plus the counts
of events dropped at the door, by reason. A malformed body raises `PayloadError`.

This runs for every event of every delivery, so the loops are written for speed: the common
case is checked with a few type tests and only a failure takes the slow path that names the
bad field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import TYPE_CHECKING, Any

from worker.enqueue import RoutedEvent
from worker.errors import PayloadError

try:  # 3-4x faster than the stdlib on a 100-event body; optional
    import orjson

    _fast_loads: Callable[[bytes], Any] | None = orjson.loads
except ImportError:  # pragma: no cover
    _fast_loads = None

if TYPE_CHECKING:
    from webhooks.store import Plan
    from worker.settings import Settings

__all__ = ["DROP_REASONS", "EMAIL_TYPES", "Routed", "Router", "dedupe_key_email", "dedupe_key_hubspot"]

# Why an event was acknowledged but not enqueued (the `reason` label of the dropped counter).
DROP_REASONS = ("unknown_type", "unhandled_object", "irrelevant_type", "irrelevant_property", "echo")

# Object types HubSpot app webhooks can carry (hubspot-facts.md §1.2); the worker needs only
# contacts and, for rollups, companies.
_HUBSPOT_OBJECTS = frozenset(
    {"contact", "company", "deal", "ticket", "conversation", "line_item", "product", "object", "event", "quote"}
)
_KNOWN_ACTIONS = frozenset(
    {"creation", "deletion", "merge", "propertyChange", "restore", "associationChange", "privacyDeletion",
     "newMessage", "completed"}
)
# Email Events API types (hubspot-facts.md §2).
EMAIL_TYPES = frozenset(
    {"SENT", "PROCESSED", "DROPPED", "DELIVERED", "DEFERRED", "BOUNCE", "OPEN", "CLICK", "FORWARD", "PRINT",
     "SPAMREPORT", "STATUSCHANGE", "UNBOUNCE", "MTA_DROPPED"}
)
# Associations that matter to the lifecycle: a contact's companies (rollups, POC) and deals.
_ASSOCIATED_OBJECTS = frozenset({"COMPANY", "DEAL"})
_SEP = "\x1f"
_SCALARS = (str, int, float, bool)

# A handler validates the kind-specific fields and answers (bucket, group, extra key material),
# or None after counting a drop.
_Target = tuple[str, str, str] | None
_Handler = Callable[[dict[str, Any], int, "Routed"], _Target]


@dataclass
class Routed:
    """The outcome of routing one body: events to enqueue, and what was skipped."""

    events: list[RoutedEvent] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0  # repeated inside this very body
    # The events already grouped into jobs, by portal, when the fast path did it on the way
    # (webhooks.fastpath); the store groups `events` itself otherwise.
    plans: dict[int, Plan] | None = field(default=None, compare=False, repr=False)

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values())

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1


_BLAKE2B_128 = blake2b(digest_size=16)  # never updated: copying it is ~30 % faster than a new one


def _digest(text: str) -> str:
    """The 128-bit BLAKE2b hex digest of `text` (a dedupe key)."""
    h = _BLAKE2B_128.copy()
    h.update(text.encode())
    return h.hexdigest()


# orjson turns integers past 64 bits into floats; a run of 19+ digits sends the body to the stdlib.
# (bytes.translate + `in` finds such a run ~20x faster than a regex.)
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19


_EXPONENT = re.compile(rb"[0-9][eE][+-]?[0-9]")


def _orjson_refuses_infinity() -> bool:
    """orjson 3.x refuses 1e400 itself; only an orjson that parses it as inf needs the (costly,
    ~10 ns a byte) scan for exponents after parsing."""
    if _fast_loads is None:  # pragma: no cover
        return True
    try:
        _fast_loads(b"[1e400]")
    except ValueError:
        return True
    return False  # pragma: no cover


_SCAN_EXPONENTS = not _orjson_refuses_infinity()
MAX_DEPTH = 32  # HubSpot's events are flat; deeper values cannot be serialised back safely


def _loads(body: bytes) -> Any:
    value = _parse(body)
    # A cheap bound first (two C-level counts): every item of a top-level array spends at least
    # one bracket, so depth <= brackets - items + 1; a flat 100-event delivery is never walked.
    brackets = body.count(b"[") + body.count(b"{")
    bound = brackets - len(value) + 1 if type(value) is list else brackets
    if bound > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise PayloadError(f"body nests values more than {MAX_DEPTH} levels deep")
    return value


def _parse(body: bytes) -> Any:
    if _fast_loads is not None and _LONG_RUN not in body.translate(_DIGITS_TO_ZERO):
        try:
            value = _fast_loads(body)
        except ValueError:
            pass  # let the stdlib decide (and word the error)
        else:
            if _SCAN_EXPONENTS and _EXPONENT.search(body):  # 1e400 as inf cannot be stored as JSON
                _check_encodable(value)
            return value
    try:
        value = json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise PayloadError("body is not valid JSON") from None
    _check_encodable(value)  # the stdlib also accepts lone UTF-16 surrogates ("\\ud800")
    return value


def _check_encodable(value: Any) -> None:
    """Refuse what parses but cannot be written back: lone surrogates, inf, absurd nesting."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadError("body has a string with an invalid unicode escape") from None
    except ValueError:
        raise PayloadError("body has a number out of range") from None
    except RecursionError:
        raise PayloadError(f"body nests values more than {MAX_DEPTH} levels deep") from None


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value, iteratively (a deep value must not exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                return deepest
            stack.extend((child, depth + 1) for child in item if isinstance(child, (dict, list)))
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _bad(i: int, name: str, kind: str) -> PayloadError:
    return PayloadError(f"event {i}: {name} must be {kind}")


def _int(ev: dict[str, Any], name: str, i: int) -> int:
    value = ev.get(name)
    if type(value) is not int:
        raise _bad(i, name, "an integer")
    return value


def _opt(ev: dict[str, Any], name: str, i: int, types: tuple[type, ...], kind: str) -> Any:
    value = ev.get(name)
    if value is not None and type(value) not in types:
        raise _bad(i, name, kind)
    return value


def _check_common(ev: dict[str, Any], i: int) -> None:
    """The slow path: find and name the bad common field."""
    for name in ("portalId", "eventId", "subscriptionId", "occurredAt"):
        _int(ev, name, i)
    _opt(ev, "appId", i, (int,), "an integer")
    _opt(ev, "attemptNumber", i, (int,), "an integer")
    _opt(ev, "changeSource", i, (str,), "a string")
    _opt(ev, "sourceId", i, (str, int), "a string")


def dedupe_key_hubspot(ev: dict[str, Any], extra: str = "") -> str:
    """128-bit hex digest of the composite that identifies one HubSpot event: portalId,
    subscriptionId, eventId, objectId, occurredAt, propertyName, propertyValue (eventId alone is
    not unique), plus `extra` (association or merge fields). attemptNumber is left out on purpose."""
    get = ev.get
    return _digest(
        f"wh{_SEP}{get('portalId')}{_SEP}{get('subscriptionId')}{_SEP}{get('eventId')}{_SEP}"
        f"{get('objectId')}{_SEP}{get('occurredAt')}{_SEP}{get('propertyName')}{_SEP}{get('propertyValue')}{extra}"
    )


def dedupe_key_email(ev: dict[str, Any], portal_id: int) -> str:
    """128-bit hex digest identifying one email event: its `id` (with `created`), else its content."""
    if ev.get("id") not in (None, ""):
        return _digest(f"em{_SEP}{portal_id}{_SEP}{ev['id']}{_SEP}{ev.get('created')}")
    canonical = json.dumps(ev, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _digest(f"em-content{_SEP}{portal_id}{_SEP}{canonical}")


class Router:
    """Validation and routing rules built once from Settings (the app's view of config.yaml)."""

    def __init__(self, settings: Settings) -> None:
        policy = settings.policy
        self.max_events = settings.webhooks.max_events
        self.default_portal = settings.portal_id
        # Echoes of this app's writes: changeSource INTEGRATION and sourceId the app id.
        self.self_ids = frozenset({str(settings.app_id), f"appId:{settings.app_id}"})
        self.trigger_properties = policy.trigger_properties
        self.company_properties = frozenset({policy.company.account_status, policy.company.poc_contact_id})
        self.email_types = frozenset({"DELIVERED", *policy.health_event_types})
        self._handlers: dict[str, _Handler] = {
            "contact.creation": self._contact,
            "contact.deletion": self._contact,
            "contact.privacyDeletion": self._contact,
            "contact.restore": self._contact,
            "contact.propertyChange": self._contact_property,
            "contact.merge": self._contact_merge,
            "contact.associationChange": self._association,
            "company.associationChange": self._association,
            "company.propertyChange": self._company_property,
            "company.merge": self._company_merge,
        }

    # -- bodies ------------------------------------------------------------------------------
    def _events(self, body: bytes, *, single_ok: bool) -> list[Any]:
        data = _loads(body)
        if single_ok and type(data) is dict:
            data = [data]
        if type(data) is not list:
            raise PayloadError("body must be a JSON array of events")
        if not data:
            raise PayloadError("body holds no events")
        if len(data) > self.max_events:
            raise PayloadError(f"too many events: {len(data)} > {self.max_events}")
        return data

    def route_hubspot(self, body: bytes) -> Routed:
        """Validate a HubSpot webhook body (a JSON array of events) and route its events."""
        out = Routed()
        seen: set[str] = set()
        append, add = out.events.append, seen.add
        handlers, self_ids, triggers = self._handlers, self.self_ids, self.trigger_properties
        for i, ev in enumerate(self._events(body, single_ok=False)):
            if type(ev) is not dict:
                raise PayloadError(f"event {i}: not an object")
            get = ev.get
            etype = get("subscriptionType") or get("eventType")
            portal, event_id, subscription, occurred = (
                get("portalId"), get("eventId"), get("subscriptionId"), get("occurredAt"))
            source, source_id, app, attempt = (
                get("changeSource"), get("sourceId"), get("appId"), get("attemptNumber"))
            if etype == "contact.propertyChange":  # the common case, inlined
                obj, name, value = get("objectId"), get("propertyName"), get("propertyValue")
                if (type(portal) is not int or type(event_id) is not int or type(subscription) is not int
                        or type(occurred) is not int or type(obj) is not int or type(name) is not str
                        or (value is not None and type(value) not in _SCALARS)
                        or (source is not None and type(source) is not str)
                        or (source_id is not None and type(source_id) not in (str, int))
                        or (app is not None and type(app) is not int)
                        or (attempt is not None and type(attempt) is not int)):
                    _check_common(ev, i)
                    self._property(ev, i)
                if source == "INTEGRATION" and str(source_id) in self_ids:
                    out.drop("echo")
                    continue
                if name not in triggers:
                    out.drop("irrelevant_property")
                    continue
                # == dedupe_key_hubspot(ev), spelled out with the values at hand
                key = _digest(f"wh{_SEP}{portal}{_SEP}{subscription}{_SEP}{event_id}{_SEP}{obj}{_SEP}"
                              f"{occurred}{_SEP}{name}{_SEP}{value}")
                bucket, group = "contacts", str(obj)
            else:
                if type(etype) is not str:
                    raise PayloadError(f"event {i}: subscriptionType must be a string")
                handler = handlers.get(etype)
                if handler is None:
                    out.drop(_unhandled_reason(etype))
                    continue
                if (type(portal) is not int or type(event_id) is not int or type(subscription) is not int
                        or type(occurred) is not int
                        or (source is not None and type(source) is not str)
                        or (source_id is not None and type(source_id) not in (str, int))
                        or (app is not None and type(app) is not int)
                        or (attempt is not None and type(attempt) is not int)):
                    _check_common(ev, i)
                if source == "INTEGRATION" and str(source_id) in self_ids:
                    out.drop("echo")
                    continue
                target = handler(ev, i, out)
                if target is None:
                    continue
                bucket, group, extra = target
                key = dedupe_key_hubspot(ev, extra)
            if key in seen:
                out.duplicates += 1
                continue
            add(key)
            append(RoutedEvent(portal, bucket, group, key, ev, occurred))  # type: ignore[arg-type]  # checked above
        return out

    def route_email(self, body: bytes) -> Routed:
        """Validate an email-events body (one record or an array) and route by recipient."""
        out = Routed()
        seen: set[str] = set()
        for i, ev in enumerate(self._events(body, single_ok=True)):
            if type(ev) is not dict:
                raise PayloadError(f"event {i}: not an object")
            etype = ev.get("type")
            if type(etype) is not str:
                raise _bad(i, "type", "a string")
            recipient = ev.get("recipient")
            if type(recipient) is not str or "@" not in recipient:
                raise _bad(i, "recipient", "an email address")
            created = _int(ev, "created", i)
            _opt(ev, "id", i, (str, int), "a string")
            _opt(ev, "emailCampaignId", i, (int, str), "an integer")
            _opt(ev, "category", i, (str,), "a string")
            portal = _opt(ev, "portalId", i, (int,), "an integer") or self.default_portal
            if etype not in self.email_types:
                out.drop("irrelevant_type" if etype in EMAIL_TYPES else "unknown_type")
                continue
            key = dedupe_key_email(ev, portal)
            if key in seen:
                out.duplicates += 1
                continue
            seen.add(key)
            out.events.append(RoutedEvent(portal, "emails", recipient.strip().lower(), key, ev, created))
        return out

    # -- HubSpot event kinds -------------------------------------------------------------------
    @staticmethod
    def _contact(ev: dict[str, Any], i: int, out: Routed) -> _Target:
        contact = ev.get("objectId")
        if type(contact) is not int:
            raise _bad(i, "objectId", "an integer")
        return "contacts", str(contact), ""

    def _property(self, ev: dict[str, Any], i: int) -> tuple[int, str]:
        obj, name, value = ev.get("objectId"), ev.get("propertyName"), ev.get("propertyValue")
        if type(obj) is not int:
            raise _bad(i, "objectId", "an integer")
        if type(name) is not str:
            raise _bad(i, "propertyName", "a string")
        if value is not None and type(value) not in _SCALARS:
            raise _bad(i, "propertyValue", "a string")
        return obj, name

    def _contact_property(self, ev: dict[str, Any], i: int, out: Routed) -> _Target:
        contact, name = self._property(ev, i)
        if name not in self.trigger_properties:
            out.drop("irrelevant_property")
            return None
        return "contacts", str(contact), ""

    def _company_property(self, ev: dict[str, Any], i: int, out: Routed) -> _Target:
        company, name = self._property(ev, i)
        if name not in self.company_properties:
            out.drop("irrelevant_property")
            return None
        return "companies", str(company), ""

    @staticmethod
    def _merge(ev: dict[str, Any], i: int) -> tuple[str, str]:
        primary = _int(ev, "primaryObjectId", i)
        merged = _opt(ev, "mergedObjectIds", i, (list,), "an array of integers")
        if merged is not None and any(type(m) is not int for m in merged):
            raise _bad(i, "mergedObjectIds", "an array of integers")
        return str(primary), f"{_SEP}{primary}{_SEP}{merged}{_SEP}{ev.get('newObjectId')}"

    def _contact_merge(self, ev: dict[str, Any], i: int, out: Routed) -> _Target:
        primary, extra = self._merge(ev, i)
        return "contacts", primary, extra

    def _company_merge(self, ev: dict[str, Any], i: int, out: Routed) -> _Target:
        primary, extra = self._merge(ev, i)
        return "companies", primary, extra

    @staticmethod
    def _association(ev: dict[str, Any], i: int, out: Routed) -> _Target:
        kind = ev.get("associationType")
        if type(kind) is not str:
            raise _bad(i, "associationType", "a string")
        source = _int(ev, "fromObjectId", i)
        target = _int(ev, "toObjectId", i)
        removed = _opt(ev, "associationRemoved", i, (bool,), "a boolean")
        primary = _opt(ev, "isPrimaryAssociation", i, (bool,), "a boolean")
        extra = f"{_SEP}{kind}{_SEP}{source}{_SEP}{target}{_SEP}{removed}{_SEP}{primary}"
        left, _, right = kind.partition("_TO_")
        if left == "CONTACT" and right in _ASSOCIATED_OBJECTS:
            return "contacts", str(source), extra
        if right == "CONTACT" and left in _ASSOCIATED_OBJECTS:
            return "contacts", str(target), extra
        out.drop("irrelevant_type")
        return None


def _unhandled_reason(etype: str) -> str:
    obj, _, action = etype.partition(".")
    if obj not in _HUBSPOT_OBJECTS or action not in _KNOWN_ACTIONS:
        return "unknown_type"
    return "irrelevant_type" if obj in ("contact", "company") else "unhandled_object"
