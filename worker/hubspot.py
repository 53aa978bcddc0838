"""The HubSpot gateway: the one module that imports the official SDK.

`HubSpotGateway` wraps `hubspot-api-client` behind a few batch-shaped methods that take
and return plain dicts shaped like HubSpot's JSON. Every call goes through `_call`, which
takes a token from the shared rate limiter, passes `_request_timeout`, translates every
SDK/transport exception into `worker.errors` and retries transient ones with tenacity
(exponential backoff with jitter, honouring Retry-After and HubSpot's rate-limit headers)
until `http_retry_stop_s`, well inside the RQ job timeout.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import hubspot
import orjson
import requests
import structlog
import tenacity
import urllib3
from hubspot.crm.associations.v4 import models as assoc_models
from hubspot.crm.associations.v4.configuration import Configuration as AssocConfiguration
from hubspot.crm.contacts import models as contact_models
from hubspot.crm.contacts.configuration import Configuration as ContactsConfiguration
from hubspot.utils.requests.http_request_builder import Request as SdkRequest

from worker import metrics
from worker.errors import (
    HubSpotError,
    HubSpotNotFoundError,
    HubSpotPermanentError,
    HubSpotTransientError,
)

log = structlog.get_logger(__name__)
T = TypeVar("T")


class _Models:
    """An SDK package's models, built with one shared `Configuration`.

    A generated model given no `local_vars_configuration` makes its own with
    `Configuration.get_default_copy()`, which sets up the SDK's loggers (under logging's global lock)
    every time: 2,000 contacts' update inputs spent most of their CPU there. The models only read
    `client_side_validation` from it, so one instance, made once, is the same to them.
    """

    def __init__(self, package: Any, configuration: Any) -> None:
        self._package, self._configuration = package, configuration

    def __getattr__(self, name: str) -> Callable[..., Any]:
        cls = getattr(self._package, name)

        def build(**kwargs: Any) -> Any:
            return cls(local_vars_configuration=self._configuration, **kwargs)

        return build


_contact = _Models(contact_models, ContactsConfiguration())
_assoc = _Models(assoc_models, AssocConfiguration())

BATCH = 100  # CRM batch endpoints take 100 inputs
HISTORY_BATCH = 50  # ... and 50 when property history is requested
ASSOC_BATCH = 1000  # associations v4 batch read
SEARCH_IN_VALUES = 100
TRANSIENT_STATUSES = {423, 429, 477, 500, 502, 503, 504, 521, 523, 524}

# association type ids (HUBSPOT_DEFINED), hubspot-facts §4
TASK_TO_CONTACT = 204
DEAL_TO_CONTACT = 3
DEAL_TO_COMPANY = 341


class Limiter(Protocol):
    def acquire(self, *, search: bool = False) -> float: ...


class _NoLimit:
    def acquire(self, *, search: bool = False) -> float:
        return 0.0


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class HubSpotGateway:
    """Batch-shaped access to one HubSpot portal through the official SDK."""

    def __init__(self, *, access_token: str, base_url: str, limiter: Limiter | None = None,
                 request_timeout: tuple[float, float] = (3.0, 15.0), retry_stop_s: float = 60.0,
                 max_attempts: int = 8, sleep: Callable[[float], None] | None = None, concurrency: int = 1) -> None:
        # urllib3 retries connection setup only; all status and backoff handling is ours.
        transport_retry = urllib3.Retry(total=2, read=0, status=0, respect_retry_after_header=False,
                                        raise_on_status=False)
        self._client = hubspot.Client.create(access_token=access_token, host=base_url, base_url=base_url,
                                             retry=transport_retry)
        self._token = access_token
        self._base_url = base_url
        self._limiter = limiter or _NoLimit()
        self._timeout = request_timeout
        self._stop_s = retry_stop_s
        self._max_attempts = max_attempts
        self._sleep = sleep
        self._session = requests.Session()
        self._batch_unsubscribe = True  # until HubSpot says the token lacks the batch scope
        self._concurrency = max(1, concurrency)
        # Discovery builds a new ApiClient on every attribute access: build each API once.
        crm = self._client.crm
        self._batch = {name: getattr(crm, name).batch_api for name in ("contacts", "companies", "deals")}
        self._batch["tasks"] = crm.objects.tasks.batch_api
        self._batch["notes"] = crm.objects.notes.batch_api
        self._search = {"contacts": crm.contacts.search_api, "deals": crm.deals.search_api}
        self._assoc = crm.associations.v4.batch_api
        self._properties = crm.properties.core_api
        self._groups = crm.properties.groups_api
        self._pipelines = crm.pipelines.pipelines_api

    # -- the one way out ---------------------------------------------------------------------
    def _call(self, endpoint: str, fn: Callable[..., T], *args: Any, search: bool = False,
              **kwargs: Any) -> T:
        """Call `fn` with limiter, timeout, error translation and retries."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(HubSpotTransientError),
            wait=_wait_for,
            stop=(tenacity.stop_after_delay(self._stop_s) | tenacity.stop_after_attempt(self._max_attempts)),
            reraise=True,
            sleep=self._sleep or tenacity.nap.sleep,
            before_sleep=_log_retry(endpoint),
        )
        for attempt in retrying:
            with attempt:
                waited = self._limiter.acquire(search=search)
                metrics.LIMITER_WAIT.observe(waited)
                try:
                    result = fn(*args, _request_timeout=self._timeout, **kwargs)
                except Exception as exc:  # every SDK package has its own ApiException
                    error = translate(exc, endpoint)
                    metrics.HUBSPOT_CALLS.labels(endpoint=endpoint, status=str(error.status)).inc()
                    raise error from exc
                metrics.HUBSPOT_CALLS.labels(endpoint=endpoint, status="ok").inc()
                return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _raw(self, method: str, path: str, *, body: Any = None, qs: Mapping[str, str] | None = None,
             timeout: tuple[float, float] | None = None) -> requests.Response:
        """The SDK's generic request (as `client.api_request` builds it), sent with a timeout."""
        options: dict[str, Any] = {"method": method, "path": path}
        if body is not None:
            options["body"] = body
        if qs:
            options["qs"] = dict(qs)
        request = SdkRequest(self._client.config, options)
        response = self._session.request(request.get_method(), request.get_url(),
                                         timeout=timeout or self._timeout, **request.get_options_for_sending())
        if response.status_code >= 400:
            raise _RawHttpError(response)
        return response

    # -- contacts ------------------------------------------------------------------------------
    def read_objects(self, object_type: str, ids: Sequence[str], properties: Sequence[str],
                     history: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
        """Batch-read objects by id; ids HubSpot does not have are absent from the answer."""
        found: dict[str, dict[str, Any]] = {}
        size = HISTORY_BATCH if history else BATCH

        read_json = _json_answer(self._batch[object_type].read)

        def read(part: Sequence[str]) -> Any:
            body = _contact.BatchReadInputSimplePublicObjectId(
                inputs=[_contact.SimplePublicObjectId(id=str(i)) for i in part],
                properties=list(properties), properties_with_history=list(history) or None)
            return self._call(f"{object_type}.batch.read", read_json, body, archived=False)

        for answer in self._each(read, list(chunks(list(dict.fromkeys(ids)), size))):
            for obj in answer.get("results") or []:
                found[str(obj["id"])] = _raw_object_json(obj)
        return found

    def _each(self, fn: Callable[[Sequence[Any]], T], parts: list[Sequence[Any]]) -> list[T]:
        """`fn` over independent batch parts, up to `concurrency` at a time, answers in order.

        A big job's batches are independent (different objects): sent one after the other they
        wait for HubSpot's latency one after the other. Each still goes through `_call`, so the
        shared limiter paces them all; the first error raises once the others have finished.
        """
        if self._concurrency == 1 or len(parts) < 2:
            return [fn(part) for part in parts]
        with ThreadPoolExecutor(min(self._concurrency, len(parts)), thread_name_prefix="hubspot-batch") as pool:
            futures = [pool.submit(fn, part) for part in parts]
            return [f.result() for f in futures]

    def update_objects(self, object_type: str, updates: Mapping[str, Mapping[str, str]]) -> list[str]:
        """Batch-update objects; returns the ids HubSpot no longer has. Other errors raise."""
        missing: list[str] = []
        items = [(oid, dict(props)) for oid, props in updates.items() if props]
        update_json = _json_answer(self._batch[object_type].update)

        def update(part: Sequence[tuple[str, dict[str, str]]]) -> Any:
            body = _contact.BatchInputSimplePublicObjectBatchInput(
                inputs=[_contact.SimplePublicObjectBatchInput(id=str(oid), properties=props)
                        for oid, props in part])
            return self._call(f"{object_type}.batch.update", update_json, body)

        for answer in self._each(update, list(chunks(items, BATCH))):
            missing.extend(_batch_errors(answer, f"{object_type}.batch.update"))
        return missing

    def create_objects(self, object_type: str, inputs: Sequence[Mapping[str, Any]]) -> list[str]:
        """Batch-create objects; each input is {"properties": {...}, "associations": [...]}."""
        ids: list[str] = []
        create_json = _json_answer(self._batch[object_type].create)

        def create(part: Sequence[Mapping[str, Any]]) -> Any:
            body = _contact.BatchInputSimplePublicObjectBatchInputForCreate(inputs=[
                _contact.SimplePublicObjectInputForCreate(
                    properties=dict(item["properties"]),
                    associations=[_association_spec(a) for a in item.get("associations", [])])
                for item in part])
            return self._call(f"{object_type}.batch.create", create_json, body)

        for answer in self._each(create, list(chunks(list(inputs), BATCH))):
            if _batch_errors(answer, f"{object_type}.batch.create"):
                raise HubSpotPermanentError(f"{object_type}.batch.create: some inputs were rejected")
            ids.extend(str(obj["id"]) for obj in answer.get("results") or [])
        return ids

    def find_contacts_by_email(self, emails: Iterable[str]) -> dict[str, str]:
        """Map lowercased email -> contact id, with batched CRM searches (IN filter)."""
        wanted = sorted({e.strip().lower() for e in emails if e and e.strip()})
        found: dict[str, str] = {}
        for part in chunks(wanted, SEARCH_IN_VALUES):
            request = _contact.PublicObjectSearchRequest(
                filter_groups=[_contact.FilterGroup(filters=[
                    _contact.Filter(property_name="email", operator="IN", values=list(part))])],
                properties=["email"], limit=200)
            answer = self._call("contacts.search", self._search["contacts"].do_search, request, search=True)
            for obj in answer.results or []:
                email = (obj.properties or {}).get("email")
                if email:
                    found[email.lower()] = str(obj.id)
        return found

    def search(self, object_type: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """One CRM search page, as HubSpot's JSON: {"total", "results", "paging"}."""
        model = _contact.PublicObjectSearchRequest(
            filter_groups=[_contact.FilterGroup(filters=[
                _contact.Filter(property_name=f["propertyName"], operator=f["operator"],
                                      value=f.get("value"), values=f.get("values"), high_value=f.get("highValue"))
                for f in group["filters"]]) for group in request.get("filterGroups", [])],
            sorts=request.get("sorts"), properties=request.get("properties"),
            limit=request.get("limit", 100), after=request.get("after"))
        answer = self._call(f"{object_type}.search", self._search[object_type].do_search, model, search=True)
        after = answer.paging.next.after if answer.paging and answer.paging.next else None
        return {"total": answer.total, "results": [_object_json(o) for o in answer.results or []],
                "paging": {"next": {"after": after}} if after else None}

    # -- associations --------------------------------------------------------------------------
    def associations(self, from_type: str, to_type: str, ids: Sequence[str]) -> dict[str, list[str]]:
        """Map each id to the ids it is associated with (v4 batch read, paging followed)."""
        result: dict[str, list[str]] = {str(i): [] for i in ids}
        pending = [(str(i), None) for i in dict.fromkeys(ids)]
        get_page = _json_answer(self._assoc.get_page)  # 1,000 rows of models cost ~0.2 s of CPU
        while pending:
            part, pending = pending[:ASSOC_BATCH], pending[ASSOC_BATCH:]
            body = _assoc.BatchInputPublicFetchAssociationsBatchRequest(inputs=[
                _assoc.PublicFetchAssociationsBatchRequest(id=i, after=after) for i, after in part])
            answer = self._call(f"associations.{from_type}.{to_type}.batch.read", get_page, from_type, to_type, body)
            for source, targets, after in _association_rows(answer):
                result.setdefault(source, []).extend(targets)
                if after:
                    pending.append((source, after))
        return {k: list(dict.fromkeys(v)) for k, v in result.items()}

    # -- communication preferences ---------------------------------------------------------------
    def unsubscribe_all(self, email: str) -> None:
        """Unsubscribe an address from all email (v4 unsubscribe-all; idempotent)."""
        path = f"/communication-preferences/v4/statuses/{quote(email, safe='')}/unsubscribe-all"
        self._call("commprefs.unsubscribe_all", self._raw_call, "POST", path, qs={"channel": "EMAIL"})

    def unsubscribe_all_many(self, emails: Iterable[str]) -> None:
        """Unsubscribe many addresses from all email: the v4 batch endpoint, 100 addresses a call.

        The batch endpoint needs a scope of its own (`communication_preferences.statuses.batch.write`,
        hubspot-facts §5) that not every portal grants: on a 403 this gateway falls back, for good,
        to one `unsubscribe_all` per address. A batch answer that reports errors is redone one by
        one too (the call is idempotent), so that each failure raises with its own address.
        """
        wanted = sorted({e.strip().lower() for e in emails if e and e.strip()})
        for part in chunks(wanted, BATCH):
            if self._batch_unsubscribe and self._unsubscribe_batch(list(part)):
                continue
            for email in part:
                self.unsubscribe_all(email)

    def _unsubscribe_batch(self, emails: list[str]) -> bool:
        """One batch call; False when it must be redone one by one (no scope, or errors reported)."""
        try:
            answer = self._call("commprefs.unsubscribe_all.batch", self._raw_call, "POST",
                                "/communication-preferences/v4/statuses/batch/unsubscribe-all",
                                qs={"channel": "EMAIL"}, body={"inputs": emails})
        except HubSpotPermanentError as exc:
            if exc.status != 403:
                raise
            self._batch_unsubscribe = False
            log.warning("unsubscribe_batch_unavailable", status=exc.status, error=str(exc),
                        why="no batch scope: one call per address from now on")
            return False
        errors = (answer or {}).get("errors") if isinstance(answer, dict) else None
        if errors:
            log.warning("unsubscribe_batch_errors", errors=len(errors), why="redone one address at a time")
            return False
        return True

    # -- email events (legacy v1; reconcile) -------------------------------------------------------
    def email_events(self, *, start_ms: int, end_ms: int, event_type: str | None = None,
                     campaign_id: str | None = None, offset: str | None = None,
                     limit: int = 1000) -> dict[str, Any]:
        """One page of `GET /email/public/v1/events` in [start_ms, end_ms]: {"events", "hasMore", "offset"}."""
        qs = {"startTimestamp": str(start_ms), "endTimestamp": str(end_ms), "limit": str(limit)}
        for name, value in (("eventType", event_type), ("campaignId", campaign_id), ("offset", offset)):
            if value:
                qs[name] = str(value)
        answer = self._call("email.events", self._raw_call, "GET", "/email/public/v1/events", qs=qs)
        return answer if isinstance(answer, dict) else {"events": [], "hasMore": False}

    def _raw_call(self, method: str, path: str, *, _request_timeout: tuple[float, float],
                  body: Any = None, qs: Mapping[str, str] | None = None) -> Any:
        response = self._raw(method, path, body=body, qs=qs, timeout=_request_timeout)
        return response.json() if response.content else None

    # -- properties (setup-portal) -------------------------------------------------------------
    def get_properties(self, object_type: str) -> dict[str, dict[str, Any]]:
        answer = self._call(f"properties.{object_type}.list", self._raw_call, "GET",
                            f"/crm/v3/properties/{object_type}")
        return {p["name"]: p for p in answer.get("results", [])}

    def get_groups(self, object_type: str) -> dict[str, dict[str, Any]]:
        answer = self._call(f"properties.{object_type}.groups", self._raw_call, "GET",
                            f"/crm/v3/properties/{object_type}/groups")
        return {g["name"]: g for g in answer.get("results", [])}

    def create_group(self, object_type: str, group: Mapping[str, Any]) -> None:
        self._call(f"properties.{object_type}.groups.create", self._raw_call, "POST",
                   f"/crm/v3/properties/{object_type}/groups", body=dict(group))

    def create_property(self, object_type: str, prop: Mapping[str, Any]) -> None:
        self._call(f"properties.{object_type}.create", self._raw_call, "POST",
                   f"/crm/v3/properties/{object_type}", body=dict(prop))

    def update_property(self, object_type: str, name: str, changes: Mapping[str, Any]) -> None:
        self._call(f"properties.{object_type}.update", self._raw_call, "PATCH",
                   f"/crm/v3/properties/{object_type}/{quote(name, safe='')}", body=dict(changes))


# -- translation -----------------------------------------------------------------------------------
class _RawHttpError(Exception):
    def __init__(self, response: requests.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.status = response.status_code
        self.body = response.text
        self.headers = response.headers


def translate(exc: BaseException, endpoint: str) -> HubSpotError:
    """Map any SDK, urllib3 or requests exception to the project's HubSpotError tree."""
    if isinstance(exc, HubSpotError):
        return exc
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status > 0 and hasattr(exc, "body"):
        body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else (exc.body or "")
        headers = getattr(exc, "headers", None) or {}
        message = f"{endpoint}: HubSpot answered {status}{_error_message(body)}"
        retry_after = _retry_after(status, headers)
        if status in TRANSIENT_STATUSES:
            return HubSpotTransientError(message, status=status, retry_after_s=retry_after, body=body)
        if status == 404:
            return HubSpotNotFoundError(message, status=status, body=body)
        return HubSpotPermanentError(message, status=status, body=body)
    if isinstance(exc, (urllib3.exceptions.HTTPError, requests.exceptions.RequestException,
                        TimeoutError, ConnectionError)):
        return HubSpotTransientError(f"{endpoint}: no answer from HubSpot ({type(exc).__name__})")
    if status == 0:  # SDK ApiException with no HTTP answer (e.g. an SSL error)
        return HubSpotTransientError(f"{endpoint}: no answer from HubSpot ({getattr(exc, 'reason', exc)})")
    return HubSpotPermanentError(f"{endpoint}: unexpected {type(exc).__name__}: {exc}")


def _error_message(body: str) -> str:
    try:
        message = json.loads(body).get("message")
    except (ValueError, AttributeError):
        return ""
    return f": {message}" if message else ""


def _header(headers: Any, name: str) -> str | None:
    try:
        value = headers.get(name)
    except AttributeError:
        return None
    return str(value) if value is not None else None


def _retry_after(status: int, headers: Any) -> float | None:
    """Seconds to wait before retrying, from Retry-After or HubSpot's rate-limit headers."""
    value = _header(headers, "Retry-After")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            return None
    if status == 423:
        return 2.0  # "locks will last for 2 seconds"
    if status == 429 and _header(headers, "X-HubSpot-RateLimit-Remaining") == "0":
        interval = _header(headers, "X-HubSpot-RateLimit-Interval-Milliseconds")
        if interval and interval.isdigit():
            return min(int(interval) / 1000.0, 10.0) / 2  # the rolling window frees up gradually
    return None


def _wait_for(state: tenacity.RetryCallState) -> float:
    """Exponential backoff with full jitter, never shorter than what HubSpot asked for."""
    exc = state.outcome.exception() if state.outcome else None
    backoff = random.uniform(0, min(8.0, 0.25 * 2 ** state.attempt_number))
    asked = getattr(exc, "retry_after_s", None) or 0.0
    return max(backoff, asked)


def _log_retry(endpoint: str) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        status = getattr(exc, "status", 0)
        if status == 429:
            metrics.RATE_LIMITED.inc()
        log.warning("hubspot_retry", endpoint=endpoint, status=status, attempt=state.attempt_number,
                    wait_s=round(state.next_action.sleep, 2) if state.next_action else None)
    return before_sleep


def _json_answer(method: Callable[..., Any]) -> Callable[..., Any]:
    """An SDK API method that answers HubSpot's JSON (dicts) instead of the SDK's models.

    The SDK still builds and sends the request from its models, and still raises its ApiException
    on any non-2xx (with status, body and headers, as `translate` expects). Only the answer is not
    turned into models: that costs about 20 ms of CPU per 100 objects with history (and about 10 ms
    for a batch update's or create's 100 echoed objects), against well under 1 ms to parse the JSON,
    and a 2,000-contact job makes dozens of such calls. The body is read inside `_call`, so one that
    breaks off is translated and retried like any other transport error.
    """
    def call(*args: Any, **kwargs: Any) -> Any:
        raw = method(*args, _preload_content=False, **kwargs)
        try:
            data = raw.data
        finally:
            raw.release_conn()
        return orjson.loads(data) if data else {}

    return call


def _association_rows(answer: Mapping[str, Any]) -> Iterator[tuple[str, list[str], str | None]]:
    """(from id, to ids, the next page's `after`) of a v4 association batch read's JSON answer."""
    for row in answer.get("results") or []:
        after = ((row.get("paging") or {}).get("next") or {}).get("after")
        yield str(row["from"]["id"]), [str(t["toObjectId"]) for t in row.get("to") or []], after or None


def _batch_errors(answer: Mapping[str, Any], endpoint: str) -> list[str]:
    """Ids a batch answer (HubSpot's JSON, 200 or 207) reports as not found; any other error raises."""
    missing: list[str] = []
    for error in answer.get("errors") or []:
        category = error.get("category") or ""
        message = error.get("message") or ""
        context = error.get("context") or {}
        ids = [str(i) for i in context.get("ids", [])] if isinstance(context, dict) else []
        if category == "OBJECT_NOT_FOUND" or "not found" in message.lower():
            missing.extend(ids)
            continue
        raise HubSpotPermanentError(f"{endpoint}: {category or 'error'}: {message}")
    return missing


def _association_spec(a: Mapping[str, Any]) -> contact_models.PublicAssociationsForObject:
    return _contact.PublicAssociationsForObject(
        to=_contact.PublicObjectId(id=str(a["to"])),
        types=[_contact.AssociationSpec(association_category="HUBSPOT_DEFINED",
                                              association_type_id=int(a["type_id"]))])


def _ms(value: Any) -> int | str | None:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return value  # type: ignore[no-any-return]


def _raw_object_json(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A batch read's JSON object in the shape `_object_json` gives (history timestamps in ms)."""
    data: dict[str, Any] = {"id": str(obj["id"]), "properties": dict(obj.get("properties") or {})}
    history = obj.get("propertiesWithHistory")
    if history is not None:
        data["propertiesWithHistory"] = {
            name: [{"value": h.get("value"), "timestamp": _iso_ms(h.get("timestamp")),
                    "sourceType": h.get("sourceType"), "sourceId": h.get("sourceId")} for h in entries or []]
            for name, entries in history.items()}
    return data


def _iso_ms(value: Any) -> int | str | None:
    """HubSpot's ISO timestamp in ms since the epoch, as the SDK's datetime gives it (else as is)."""
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            return value
    return value  # type: ignore[no-any-return]


def _object_json(obj: Any) -> dict[str, Any]:
    """An SDK object model back into HubSpot's JSON shape (camelCase, history included)."""
    data: dict[str, Any] = {"id": str(obj.id), "properties": dict(obj.properties or {})}
    history = getattr(obj, "properties_with_history", None)
    if history is not None:
        data["propertiesWithHistory"] = {
            name: [{"value": h.value, "timestamp": _ms(h.timestamp), "sourceType": h.source_type,
                    "sourceId": h.source_id} for h in entries or []]
            for name, entries in history.items()}
    return data
