"""Focused tests of the HubSpot gateway's error mapping and retries.

The SDK's typed APIs send with urllib3 (which `responses` cannot intercept), so those
paths run against a scripted loopback server; the generic-request paths (unsubscribe-all,
properties) use `requests` and are tested with `responses`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import responses
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from worker.errors import HubSpotPermanentError, HubSpotTransientError
from worker.hubspot import HubSpotGateway, translate


class Script:
    """A loopback server answering each request with the next scripted (status, body, headers)."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, Any, dict[str, str]]] = []
        self.requests: list[tuple[str, str, Any]] = []
        self.server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    @Request.application  # type: ignore[misc]
    def _app(self, request: Request) -> Response:
        body = request.get_json(silent=True)
        self.requests.append((request.method, request.path, body))
        status, payload, headers = self.answers.pop(0) if self.answers else (500, {"message": "no script"}, {})
        return Response(json.dumps(payload), status=status, headers=headers, content_type="application/json")


@pytest.fixture()
def script() -> Iterator[Script]:
    s = Script()
    yield s
    s.server.shutdown()


def gateway(url: str, **kw: Any) -> HubSpotGateway:
    sleeps: list[float] = []
    gw = HubSpotGateway(access_token="t", base_url=url, request_timeout=(1.0, 2.0), retry_stop_s=5,
                        sleep=sleeps.append, **kw)
    gw.sleeps = sleeps  # type: ignore[attr-defined]
    return gw


OK_READ = {"status": "COMPLETE", "results": [{"id": "1", "properties": {"email": "a@x.test"},
                                              "createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z",
                                              "archived": False}],
           "startedAt": "2026-01-01T00:00:00Z", "completedAt": "2026-01-01T00:00:00Z"}
RATE_LIMITED = {"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
                "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING", "correlationId": "c"}


def test_429_with_retry_after_is_retried_and_waits_as_asked(script: Script) -> None:
    script.answers = [(429, RATE_LIMITED, {"Retry-After": "3"}), (200, OK_READ, {})]
    gw = gateway(script.url)
    rows = gw.read_objects("contacts", ["1"], ["email"])
    assert rows["1"]["properties"]["email"] == "a@x.test"
    assert len(script.requests) == 2
    assert gw.sleeps[0] >= 3.0  # type: ignore[attr-defined]


def test_5xx_is_retried_until_the_stop_then_raises_transient(script: Script) -> None:
    script.answers = [(502, {"message": "bad gateway"}, {})] * 20
    gw = gateway(script.url, max_attempts=4)
    with pytest.raises(HubSpotTransientError) as info:
        gw.read_objects("contacts", ["1"], ["email"])
    assert info.value.status == 502
    assert "contacts.batch.read: HubSpot answered 502" in str(info.value)
    assert len(script.requests) == 4


def test_400_is_permanent_and_not_retried(script: Script) -> None:
    script.answers = [(400, {"status": "error", "message": "Property values were not valid",
                             "category": "VALIDATION_ERROR"}, {})]
    gw = gateway(script.url)
    with pytest.raises(HubSpotPermanentError) as info:
        gw.update_objects("contacts", {"1": {"contact_status": "nope"}})
    assert info.value.status == 400
    assert "Property values were not valid" in str(info.value)
    assert len(script.requests) == 1


def test_connection_refused_is_transient() -> None:
    gw = gateway("http://127.0.0.1:9", max_attempts=2)
    with pytest.raises(HubSpotTransientError):
        gw.read_objects("contacts", ["1"], ["email"])


def test_batch_update_207_reports_missing_ids_and_raises_on_other_errors(script: Script) -> None:
    partial = {"status": "COMPLETE", "results": [], "numErrors": 1, "startedAt": "2026-01-01T00:00:00Z",
               "completedAt": "2026-01-01T00:00:00Z",
               "errors": [{"status": "error", "category": "OBJECT_NOT_FOUND", "message": "Object not found",
                           "context": {"ids": ["7"]}}]}
    script.answers = [(207, partial, {})]
    assert gateway(script.url).update_objects("contacts", {"7": {"a": "b"}}) == ["7"]
    other = dict(partial, errors=[{"status": "error", "category": "VALIDATION_ERROR", "message": "bad value"}])
    script.answers = [(207, other, {})]
    with pytest.raises(HubSpotPermanentError, match="VALIDATION_ERROR"):
        gateway(script.url).update_objects("contacts", {"7": {"a": "b"}})


def test_batches_are_split_at_100_and_50_with_history(script: Script) -> None:
    empty = dict(OK_READ, results=[])
    script.answers = [(200, empty, {})] * 10
    gw = gateway(script.url)
    gw.read_objects("contacts", [str(i) for i in range(250)], ["email"])
    assert [len(body["inputs"]) for _, _, body in script.requests] == [100, 100, 50]
    script.requests.clear()
    gw.read_objects("contacts", [str(i) for i in range(120)], ["email"], history=["contact_status"])
    assert [len(body["inputs"]) for _, _, body in script.requests] == [50, 50, 20]
    assert script.requests[0][2]["propertiesWithHistory"] == ["contact_status"]


@responses.activate
def test_unsubscribe_all_uses_v4_with_channel_and_retries_5xx() -> None:
    url = "http://hubspot.test/communication-preferences/v4/statuses/a%40x.test/unsubscribe-all"
    responses.add(responses.POST, url, status=503, json={"message": "down"})
    responses.add(responses.POST, url, status=200, json={"status": "COMPLETE", "results": []})
    gw = gateway("http://hubspot.test")
    gw.unsubscribe_all("a@x.test")
    assert len(responses.calls) == 2
    assert responses.calls[1].request.url.endswith("unsubscribe-all?channel=EMAIL")
    assert responses.calls[1].request.headers["Authorization"] == "Bearer t"


@responses.activate
def test_unsubscribe_all_401_is_permanent() -> None:
    url = "http://hubspot.test/communication-preferences/v4/statuses/a%40x.test/unsubscribe-all"
    responses.add(responses.POST, url, status=401, json={"category": "INVALID_AUTHENTICATION"})
    with pytest.raises(HubSpotPermanentError) as info:
        gateway("http://hubspot.test").unsubscribe_all("a@x.test")
    assert info.value.status == 401


BATCH_UNSUB = "http://hubspot.test/communication-preferences/v4/statuses/batch/unsubscribe-all"
ONE_UNSUB = "http://hubspot.test/communication-preferences/v4/statuses/{}/unsubscribe-all"


@responses.activate
def test_unsubscribe_all_many_sends_batches_of_100_distinct_addresses() -> None:
    responses.add(responses.POST, BATCH_UNSUB, status=200, json={"status": "COMPLETE", "results": []})
    emails = [f"u{i}@x.test" for i in range(150)] + ["U0@x.test", "u1@x.test "]
    gateway("http://hubspot.test").unsubscribe_all_many(emails)
    bodies = [json.loads(c.request.body) for c in responses.calls]
    assert [len(b["inputs"]) for b in bodies] == [100, 50]
    assert sorted(e for b in bodies for e in b["inputs"]) == sorted(f"u{i}@x.test" for i in range(150))
    assert all(c.request.url.endswith("unsubscribe-all?channel=EMAIL") for c in responses.calls)


@responses.activate
def test_unsubscribe_all_many_falls_back_to_one_call_per_address_for_good_on_403() -> None:
    responses.add(responses.POST, BATCH_UNSUB, status=403, json={"category": "MISSING_SCOPES"})
    for email in ("a@x.test", "b@x.test", "c@x.test"):
        responses.add(responses.POST, ONE_UNSUB.format(email.replace("@", "%40")), status=204)
    gw = gateway("http://hubspot.test")
    gw.unsubscribe_all_many(["a@x.test", "b@x.test"])
    gw.unsubscribe_all_many(["c@x.test"])  # no batch attempt any more
    paths = [c.request.url.split("?")[0].rsplit("/statuses/", 1)[1] for c in responses.calls]
    assert paths == ["batch/unsubscribe-all", "a%40x.test/unsubscribe-all", "b%40x.test/unsubscribe-all",
                     "c%40x.test/unsubscribe-all"]


@responses.activate
def test_unsubscribe_all_many_redoes_a_batch_with_errors_one_by_one_and_raises_other_4xx() -> None:
    responses.add(responses.POST, BATCH_UNSUB, status=207, json={"status": "COMPLETE", "results": [],
                                                                 "numErrors": 1, "errors": [{"message": "x"}]})
    responses.add(responses.POST, ONE_UNSUB.format("a%40x.test"), status=204)
    gw = gateway("http://hubspot.test")
    gw.unsubscribe_all_many(["a@x.test"])
    assert len(responses.calls) == 2
    responses.replace(responses.POST, BATCH_UNSUB, status=400, json={"category": "VALIDATION_ERROR"})
    with pytest.raises(HubSpotPermanentError) as info:
        gw.unsubscribe_all_many(["a@x.test"])
    assert info.value.status == 400


def test_translate_maps_every_sdk_package_exception_by_status() -> None:
    from hubspot.crm.companies import ApiException as CompaniesApiException
    from hubspot.crm.contacts import ApiException as ContactsApiException

    for cls in (ContactsApiException, CompaniesApiException):
        for status, kind in ((429, HubSpotTransientError), (423, HubSpotTransientError),
                             (503, HubSpotTransientError), (404, HubSpotPermanentError),
                             (403, HubSpotPermanentError)):
            exc = cls(status=status, reason="x")
            exc.body = b'{"message": "m"}'
            assert isinstance(translate(exc, "e"), kind)


class EchoReads:
    """A loopback batch/read endpoint that answers with the ids asked for, and counts how many
    requests were in flight at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = self.most = 0
        self.sizes: list[int] = []
        self.server = make_server("127.0.0.1", 0, self._app, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    @Request.application  # type: ignore[misc]
    def _app(self, request: Request) -> Response:
        import time

        ids = [i["id"] for i in (request.get_json(silent=True) or {}).get("inputs", [])]
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            self.sizes.append(len(ids))
        time.sleep(0.05)  # HubSpot's latency: what concurrency hides
        with self.lock:
            self.in_flight -= 1
        results = [{"id": i, "properties": {"email": f"{i}@x.test"}, "createdAt": "2026-01-01T00:00:00Z",
                    "updatedAt": "2026-01-01T00:00:00Z", "archived": False} for i in ids]
        return Response(json.dumps({"status": "COMPLETE", "results": results}), content_type="application/json")


def test_a_big_read_sends_its_batches_concurrently_and_merges_every_answer() -> None:
    echo = EchoReads()
    try:
        gw = gateway(echo.url, concurrency=3)
        found = gw.read_objects("contacts", [str(i) for i in range(450)], ["email"])
        assert sorted(found, key=int) == [str(i) for i in range(450)]
        assert found["449"]["properties"]["email"] == "449@x.test"
        assert sorted(echo.sizes) == [50, 100, 100, 100, 100] and 1 < echo.most <= 3
        echo.sizes.clear()
        echo.most = 0
        gateway(echo.url).read_objects("contacts", [str(i) for i in range(250)], ["email"])
        assert echo.most == 1 and echo.sizes == [100, 100, 50]  # concurrency 1: one after the other, in order
    finally:
        echo.server.shutdown()


def test_a_batch_read_parsed_as_json_matches_what_the_sdk_models_give() -> None:
    """read_objects skips the SDK's models (20 ms of CPU per 100 objects with history): the JSON
    it keeps must be what `_object_json` made of the models, history timestamps in ms included."""
    from hubspot import HubSpot

    from worker.hubspot import _object_json, _raw_object_json

    answer = {"status": "COMPLETE", "startedAt": "2026-12-04T10:00:00.000Z", "completedAt": "2026-12-04T10:00:01Z",
              "results": [{"id": "7", "archived": False, "createdAt": "2026-12-04T09:00:00Z",
                           "updatedAt": "2026-12-04T09:30:00.5Z", "properties": {"email": "a@b.test", "x": None},
                           "propertiesWithHistory": {"contact_milestone": [
                               {"value": "dead", "timestamp": "2026-12-04T09:30:00.123Z", "sourceType": "CRM_UI",
                                "sourceId": "userId:7"},
                               {"value": "new", "timestamp": "2026-12-04T09:00:00Z", "sourceType": "INTEGRATION"}]}},
                          {"id": "8", "properties": {}, "createdAt": "2026-12-04T09:00:00Z",
                           "updatedAt": "2026-12-04T09:00:00Z", "archived": False}]}

    class Raw:
        data = json.dumps(answer).encode()

        def getheader(self, name: str, default: Any = None) -> str:
            return "application/json"

    api_client = HubSpot(access_token="unused").crm.contacts.batch_api.api_client
    models = api_client.deserialize(Raw(), "BatchResponseSimplePublicObject")
    assert [_raw_object_json(o) for o in answer["results"]] == [_object_json(m) for m in models.results]


def test_request_models_share_one_configuration_and_serialise_as_the_sdks_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway builds the SDK's request models with one shared Configuration: a model given none
    sets up the SDK's loggers for itself (most of a 2,000-contact job's request-building CPU).
    What goes on the wire must be what the SDK's default-built models give."""
    from hubspot import HubSpot
    from hubspot.crm.contacts import models as m
    from hubspot.crm.contacts.configuration import Configuration

    from worker.hubspot import _association_spec, _contact

    def default_built() -> Any:
        return m.BatchInputSimplePublicObjectBatchInputForCreate(inputs=[m.SimplePublicObjectInputForCreate(
            properties={"hs_task_subject": "New MQL"},
            associations=[m.PublicAssociationsForObject(
                to=m.PublicObjectId(id="7"),
                types=[m.AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=204)])])])

    expected = default_built()
    monkeypatch.setattr(Configuration, "get_default_copy",
                        classmethod(lambda cls: pytest.fail("a Configuration per model")))
    ours = _contact.BatchInputSimplePublicObjectBatchInputForCreate(inputs=[_contact.SimplePublicObjectInputForCreate(
        properties={"hs_task_subject": "New MQL"}, associations=[_association_spec({"to": 7, "type_id": 204})])])
    api_client = HubSpot(access_token="unused").crm.contacts.batch_api.api_client
    assert api_client.sanitize_for_serialization(ours) == api_client.sanitize_for_serialization(expected)
    monkeypatch.undo()
    shared = ours.inputs[0].local_vars_configuration
    assert shared.client_side_validation == Configuration.get_default_copy().client_side_validation


def test_an_association_read_parsed_as_json_matches_what_the_sdk_models_give() -> None:
    """associations() reads the v4 batch answer as JSON: the same (from, to ids, next page) as the models."""
    from hubspot import HubSpot

    from worker.hubspot import _association_rows

    answer = {"status": "COMPLETE", "startedAt": "2026-12-04T10:00:00Z", "completedAt": "2026-12-04T10:00:01Z",
              "results": [
                  {"from": {"id": "7"}, "to": [
                      {"toObjectId": 9001, "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": 1,
                                                                 "label": "Primary"}]},
                      {"toObjectId": 9_007_199_254_740_993, "associationTypes": []}],
                   "paging": {"next": {"after": "MTA=", "link": "x"}}},
                  {"from": {"id": "8"}, "to": []}]}

    class Raw:
        data = json.dumps(answer).encode()

        def getheader(self, name: str, default: Any = None) -> str:
            return "application/json"

    api_client = HubSpot(access_token="unused").crm.associations.v4.batch_api.api_client
    models = api_client.deserialize(Raw(), "BatchResponsePublicAssociationMultiWithLabel")
    from_models = [(str(r._from.id), [str(t.to_object_id) for t in r.to or []],
                    r.paging.next.after if r.paging and r.paging.next else None) for r in models.results]
    assert list(_association_rows(json.loads(json.dumps(answer)))) == from_models
    assert from_models[0] == ("7", ["9001", "9007199254740993"], "MTA=")
