"""Outgoing webhooks: payload fields, v3 and v1 signatures, batching, retries, change sources,
pause/resume/flush, and the webhooks v3 subscriptions API that controls them."""

from __future__ import annotations

import json
from typing import Any

import hubspot
import pytest
import requests
from hubspot.crm.contacts import BatchInputSimplePublicObjectBatchInputForCreate, PublicMergeInput
from hubspot.crm.contacts import SimplePublicObjectBatchInputForCreate as BatchIn
from hubspot.crm.contacts import SimplePublicObjectInput as Patch
from hubspot.crm.contacts import SimplePublicObjectInputForCreate as In
from hubspot.utils.signature import Signature
from hubspot.webhooks import SubscriptionCreateRequest, SubscriptionPatchRequest
from werkzeug.wrappers import Request

from sandbox.server import SandboxServer

from .conftest import APP_ID, PORTAL_ID, SECRET
from .helpers import unique_email
from .receiver import Receiver

pytestmark = pytest.mark.contract


def _for(object_id: str | int, kind: str | None = None) -> Any:
    return lambda e: (
        str(e.get("objectId", e.get("fromObjectId"))) == str(object_id)
        and (kind is None or e["subscriptionType"] == kind)
    )


def _flush(server: SandboxServer) -> None:
    assert requests.post(f"{server.base_url}/_sandbox/webhooks/flush?timeout=5").json()["flushed"]


def test_creation_is_signed_and_shaped_like_hubspot(
    client: hubspot.Client, receiver: Receiver, server: SandboxServer
) -> None:
    contact = client.crm.contacts.basic_api.create(
        In(properties={"email": unique_email("w"), "firstname": "Wh"})
    )
    events = receiver.wait_for(
        lambda: (found := receiver.events(predicate=_for(contact.id))) and len(found) >= 3 and found
    )
    kinds = sorted((e["subscriptionType"], e.get("propertyName")) for e in events)
    assert kinds == [
        ("contact.creation", None),
        ("contact.propertyChange", "email"),
        ("contact.propertyChange", "firstname"),
    ]
    for event in events:
        assert {k: event[k] for k in ("portalId", "appId", "attemptNumber", "changeSource", "sourceId")} == {
            "portalId": PORTAL_ID,
            "appId": APP_ID,
            "attemptNumber": 0,
            "changeSource": "INTEGRATION",
            "sourceId": str(APP_ID),
        }
        assert isinstance(event["eventId"], int) and isinstance(event["subscriptionId"], int)
        assert isinstance(event["occurredAt"], int) and event["objectId"] == int(contact.id)
    creation = next(e for e in events if e["subscriptionType"] == "contact.creation")
    assert creation["changeFlag"] == "CREATED"
    assert next(e for e in events if e.get("propertyName") == "firstname")["propertyValue"] == "Wh"

    _flush(server)
    for request in receiver.snapshot("/hook"):
        headers = request.headers
        assert headers["X-Hubspot-Signature-Version"] == "v1"
        assert Signature.is_valid(
            signature=headers["X-Hubspot-Signature-V3"],
            client_secret=SECRET,
            request_body=request.body,
            http_uri=request.url,
            http_method="POST",
            signature_version="v3",
            timestamp=headers["X-Hubspot-Request-Timestamp"],
        )
        assert Signature.is_valid(
            signature=headers["X-Hubspot-Signature"],
            client_secret=SECRET,
            request_body=request.body,
            signature_version="v1",
        )
        assert 1 <= len(request.events) <= 100


def test_change_sources_and_datetime_values(
    client: hubspot.Client, rep: hubspot.Client, receiver: Receiver
) -> None:
    contact = client.crm.contacts.basic_api.create(In(properties={"email": unique_email("cs")}))
    rep.crm.contacts.basic_api.update(contact.id, Patch(properties={"firstname": "ByRep"}))
    client.crm.contacts.basic_api.update(
        contact.id, Patch(properties={"contact_status_changed_at": "1700000000000"})
    )
    by_rep = receiver.wait_for(
        lambda: receiver.events(
            predicate=lambda e: _for(contact.id)(e) and e.get("propertyName") == "firstname"
        )
    )
    assert (by_rep[0]["changeSource"], by_rep[0]["sourceId"]) == ("CRM_UI", "userId:1101")
    stamped = receiver.wait_for(
        lambda: receiver.events(
            predicate=lambda e: _for(contact.id)(e) and e.get("propertyName") == "contact_status_changed_at"
        )
    )
    assert stamped[0]["propertyValue"] == "1700000000000"


def test_many_changes_are_batched_at_most_100_per_request(
    client: hubspot.Client, receiver: Receiver, server: SandboxServer
) -> None:
    tag = unique_email("bulk").split("@")[0]
    client.crm.contacts.batch_api.create(
        BatchInputSimplePublicObjectBatchInputForCreate(
            inputs=[BatchIn(properties={"email": f"{tag}-{i}@bulk.example"}) for i in range(100)]
        )
    )
    _flush(server)
    mine = [r for r in receiver.snapshot("/hook") if tag in r.body]
    total = sum(
        1
        for r in mine
        for e in r.events
        if e["subscriptionType"] == "contact.creation" or tag in str(e.get("propertyValue"))
    )
    assert total >= 200  # 100 creations + 100 email propertyChanges
    assert max(len(r.events) for r in mine) == 100 and all(len(r.events) <= 100 for r in mine)


def test_non_2xx_is_retried_with_incremented_attempt_number(
    client: hubspot.Client, receiver: Receiver, server: SandboxServer
) -> None:
    marker = unique_email("retry")
    failures: dict[str, int] = {"left": 2}

    def flaky(request: Request) -> int:
        if marker in request.get_data(as_text=True) and failures["left"] > 0:
            failures["left"] -= 1
            return 500
        return 204

    receiver.responder = flaky
    try:
        contact = client.crm.contacts.basic_api.create(In(properties={"email": marker}))
        _flush(server)
    finally:
        receiver.responder = None
    attempts = [
        (r.status, e["attemptNumber"])
        for r in receiver.snapshot("/hook")
        for e in r.events
        if _for(contact.id, "contact.creation")(e)
    ]
    assert attempts == [(500, 0), (500, 1), (204, 2)]
    ids = {
        e["eventId"]
        for r in receiver.snapshot("/hook")
        for e in r.events
        if _for(contact.id, "contact.creation")(e)
    }
    assert len(ids) == 1
    log = requests.get(f"{server.base_url}/_sandbox/webhooks/log").json()["results"]
    outcomes = [entry["outcome"] for entry in log if entry["status"] == 500 and entry["kind"] == "crm"]
    assert outcomes.count("retrying") >= 2


def test_association_merge_and_deletion_events(client: hubspot.Client, receiver: Receiver) -> None:
    from hubspot.crm.companies import SimplePublicObjectInputForCreate as CompanyIn

    contact = client.crm.contacts.basic_api.create(In(properties={"email": unique_email("as")}))
    other = client.crm.contacts.basic_api.create(
        In(properties={"email": unique_email("as2"), "firstname": "Other"})
    )
    company = client.crm.companies.basic_api.create(CompanyIn(properties={"name": "Assoc Events"}))
    client.crm.associations.v4.basic_api.create_default("contacts", contact.id, "companies", company.id)
    changes = receiver.wait_for(
        lambda: (
            (
                found := receiver.events(
                    predicate=lambda e: (
                        e["subscriptionType"].endswith("associationChange")
                        and {str(e["fromObjectId"]), str(e["toObjectId"])} == {contact.id, company.id}
                    )
                )
            )
            and len(found) >= 4
            and found
        )
    )
    assert {(e["subscriptionType"], e["associationType"], e["isPrimaryAssociation"]) for e in changes} == {
        ("contact.associationChange", "CONTACT_TO_COMPANY", False),
        ("contact.associationChange", "CONTACT_TO_COMPANY", True),
        ("company.associationChange", "COMPANY_TO_CONTACT", False),
        ("company.associationChange", "COMPANY_TO_CONTACT", True),
    }
    assert all(e["associationRemoved"] is False for e in changes)

    client.crm.contacts.basic_api.merge(
        PublicMergeInput(primary_object_id=contact.id, object_id_to_merge=other.id)
    )
    merge = receiver.wait_for(lambda: receiver.events(predicate=_for(contact.id, "contact.merge")))[0]
    assert merge["primaryObjectId"] == int(contact.id) and merge["mergedObjectIds"] == [int(other.id)]
    assert merge["numberOfPropertiesMoved"] == 1

    client.crm.companies.basic_api.archive(company.id)
    deletion = receiver.wait_for(lambda: receiver.events(predicate=_for(company.id, "company.deletion")))[0]
    assert deletion["changeFlag"] == "DELETED"


def test_pause_drops_and_resume_delivers(
    client: hubspot.Client, receiver: Receiver, server: SandboxServer
) -> None:
    contact = client.crm.contacts.basic_api.create(In(properties={"email": unique_email("p")}))
    requests.post(f"{server.base_url}/_sandbox/webhooks/pause")
    try:
        client.crm.contacts.basic_api.update(contact.id, Patch(properties={"firstname": "Missed"}))
        _flush(server)
    finally:
        requests.post(f"{server.base_url}/_sandbox/webhooks/resume")
    client.crm.contacts.basic_api.update(contact.id, Patch(properties={"lastname": "Seen"}))
    receiver.wait_for(
        lambda: receiver.events(
            predicate=lambda e: _for(contact.id)(e) and e.get("propertyName") == "lastname"
        )
    )
    assert not receiver.events(
        predicate=lambda e: _for(contact.id)(e) and e.get("propertyName") == "firstname"
    )
    stats = requests.get(f"{server.base_url}/_sandbox/stats").json()["webhooks"]
    assert stats["dropped"] >= 1 and stats["delivered"] >= 1


def test_subscriptions_api_controls_what_is_sent(
    server: SandboxServer, client: hubspot.Client, receiver: Receiver
) -> None:
    dev = hubspot.Client.create(api_key="any-developer-key", host=server.base_url)
    subs = dev.webhooks.subscriptions_api
    listed = subs.get_all(APP_ID).results
    wildcard = next(s for s in listed if s.event_type == "contact.propertyChange")
    assert {s.event_type for s in listed} >= {"contact.creation", "company.propertyChange", "contact.merge"}
    settings = dev.webhooks.settings_api.get_all(APP_ID)
    assert settings.target_url == receiver.url("/hook") and settings.throttling.max_concurrent_requests == 10

    subs.update(
        subscription_id=int(wildcard.id),
        app_id=APP_ID,
        subscription_patch_request=SubscriptionPatchRequest(active=False),
    )
    only = subs.create(
        APP_ID,
        SubscriptionCreateRequest(event_type="contact.propertyChange", property_name="lastname", active=True),
    )
    try:
        assert subs.get_by_id(subscription_id=int(only.id), app_id=APP_ID).property_name == "lastname"
        contact = client.crm.contacts.basic_api.create(
            In(properties={"email": unique_email("sub"), "lastname": "L"})
        )
        _flush(server)
        names = [
            e.get("propertyName")
            for e in receiver.events(predicate=_for(contact.id, "contact.propertyChange"))
        ]
        assert names == ["lastname"] and json.dumps(names)
    finally:
        subs.archive(subscription_id=int(only.id), app_id=APP_ID)
        subs.update(
            subscription_id=int(wildcard.id),
            app_id=APP_ID,
            subscription_patch_request=SubscriptionPatchRequest(active=True),
        )
    assert requests.get(f"{server.base_url}/webhooks/v3/{APP_ID}/subscriptions").status_code == 401


def test_control_batch_update_changes_many_as_one_source_and_fires_their_webhooks(
    client: hubspot.Client, receiver: Receiver, server: SandboxServer
) -> None:
    """POST /_sandbox/objects/{type}/batch/update: one call, many objects, one change source; the
    webhooks are the ones the same changes made one by one would fire, batched as HubSpot does."""
    tag = unique_email("ctlbatch").split("@")[0]
    ids = sorted(
        str(c.id)
        for part in (range(0, 100), range(100, 150))
        for c in client.crm.contacts.batch_api.create(
            BatchInputSimplePublicObjectBatchInputForCreate(
                inputs=[BatchIn(properties={"email": f"{tag}-{i}@bulk.example"}) for i in part]
            )
        ).results
    )
    body = {
        "sourceType": "CRM_UI",
        "sourceId": "userId:7",
        "userId": 7,
        "inputs": [{"id": cid, "properties": {"firstname": f"{tag}-{cid}"}} for cid in ids]
        + [{"id": "999999999", "properties": {"firstname": "nobody"}}],
    }
    answer = requests.post(f"{server.base_url}/_sandbox/objects/contacts/batch/update", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    assert sorted(answer.json()["results"]) == ids and answer.json()["missing"] == ["999999999"]
    _flush(server)
    changes = receiver.events(predicate=lambda e: e.get("propertyName") == "firstname"
                              and str(e.get("propertyValue", "")).startswith(f"{tag}-"))
    assert sorted(str(e["objectId"]) for e in changes) == ids
    assert {(e["changeSource"], e["sourceId"]) for e in changes} == {("CRM_UI", "userId:7")}
    batches = [r for r in receiver.snapshot("/hook") if f"{tag}-" in r.body and '"firstname"' in r.body]
    assert len(batches) >= 2 and all(len(r.events) <= 100 for r in batches)
    got = client.crm.contacts.basic_api.get_by_id(ids[0], properties=["firstname"],
                                                  properties_with_history=["firstname"])
    assert got.properties["firstname"] == f"{tag}-{ids[0]}"
    assert got.properties_with_history["firstname"][0].source_type == "CRM_UI"

    bad = requests.post(f"{server.base_url}/_sandbox/objects/contacts/batch/update",
                        json={"inputs": [{"properties": {}}]}, timeout=10)
    assert bad.status_code == 400
    unknown = requests.post(f"{server.base_url}/_sandbox/objects/widgets/batch/update", json={"inputs": []},
                            timeout=10)
    assert unknown.status_code >= 400
