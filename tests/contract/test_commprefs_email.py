"""Communication preferences (v3 SDK, v4 via api_request), the email events read API, and the
/_sandbox/email-events simulation that updates email-health properties and fires webhooks."""

from __future__ import annotations

import hubspot
import pytest
import requests
from hubspot.communication_preferences import ApiException as PrefsError
from hubspot.communication_preferences import PublicUpdateSubscriptionStatusRequest
from hubspot.communication_preferences.models import (
    PublicSubscriptionStatus,
    PublicSubscriptionStatusesResponse,
)
from hubspot.crm.contacts import SimplePublicObjectInputForCreate as In
from hubspot.utils.signature import Signature

from sandbox.server import SandboxServer

from .conftest import SECRET
from .helpers import unique_email
from .receiver import Receiver

pytestmark = pytest.mark.contract


def _optout_events(receiver: Receiver, contact_id: str) -> list[dict[str, object]]:
    return receiver.events(
        predicate=lambda e: (
            str(e.get("objectId")) == contact_id and e.get("propertyName") == "hs_email_optout"
        )
    )


def test_v3_status_subscribe_unsubscribe(client: hubspot.Client) -> None:
    email = unique_email("prefs")
    definitions = client.communication_preferences.definition_api.get_page().subscription_definitions
    assert {d.id for d in definitions} == {"1", "2", "3"}
    status_api = client.communication_preferences.status_api
    changed = status_api.unsubscribe(
        PublicUpdateSubscriptionStatusRequest(email_address=email, subscription_id="1")
    )
    assert isinstance(changed, PublicSubscriptionStatus) and changed.status == "NOT_SUBSCRIBED"
    with pytest.raises(PrefsError) as info:
        status_api.unsubscribe(
            PublicUpdateSubscriptionStatusRequest(email_address=email, subscription_id="1")
        )
    assert info.value.status == 400
    statuses = status_api.get_email_status(email)
    assert isinstance(statuses, PublicSubscriptionStatusesResponse)
    assert {s.id: s.status for s in statuses.subscription_statuses} == {
        "1": "NOT_SUBSCRIBED",
        "2": "SUBSCRIBED",
        "3": "SUBSCRIBED",
    }
    assert (
        status_api.subscribe(
            PublicUpdateSubscriptionStatusRequest(email_address=email, subscription_id="1")
        ).status
        == "SUBSCRIBED"
    )


def test_v4_unsubscribe_all_sets_optout_and_fires_webhook(client: hubspot.Client, receiver: Receiver) -> None:
    email = unique_email("unsub")
    contact = client.crm.contacts.basic_api.create(In(properties={"email": email}))
    response = client.api_request(
        {
            "method": "POST",
            "path": f"/communication-preferences/v4/statuses/{email}/unsubscribe-all",
            "qs": {"channel": "EMAIL", "verbose": "true"},
        }
    )
    assert response.status_code == 200, response.text
    assert {r["status"] for r in response.json()["results"]} == {"UNSUBSCRIBED"}
    got = client.crm.contacts.basic_api.get_by_id(
        contact.id, properties=["hs_email_optout"], properties_with_history=["hs_email_optout"]
    )
    assert got.properties["hs_email_optout"] == "true"
    assert got.properties_with_history["hs_email_optout"][0].source_type == "INTEGRATION"
    event = receiver.wait_for(lambda: _optout_events(receiver, contact.id))[0]
    assert event["propertyValue"] == "true" and event["changeSource"] == "INTEGRATION"

    status = client.api_request(
        {
            "method": "GET",
            "path": f"/communication-preferences/v4/statuses/{email}/unsubscribe-all",
            "qs": {"channel": "EMAIL"},
        }
    ).json()
    assert (
        status["results"][0]["status"] == "UNSUBSCRIBED"
        and status["results"][0]["wideStatusType"] == "PORTAL_WIDE"
    )
    v3 = client.communication_preferences.status_api.get_email_status(email).subscription_statuses
    assert {s.source_of_status for s in v3} == {"PORTAL_WIDE_STATUS"}

    other = unique_email("batch")
    batch = client.api_request(
        {
            "method": "POST",
            "path": "/communication-preferences/v4/statuses/batch/unsubscribe-all",
            "qs": {"channel": "EMAIL"},
            "body": {"inputs": [other, email]},
        }
    )
    assert batch.status_code == 200 and [r["subscriberIdString"] for r in batch.json()["results"]] == [
        other,
        email,
    ]
    missing_channel = client.api_request(
        {"method": "POST", "path": f"/communication-preferences/v4/statuses/{other}/unsubscribe-all"}
    )
    assert missing_channel.status_code == 400


def test_email_events_update_health_and_are_readable(
    client: hubspot.Client, server: SandboxServer, receiver: Receiver
) -> None:
    email = unique_email("mail")
    contact = client.crm.contacts.basic_api.create(In(properties={"email": email}))
    control = f"{server.base_url}/_sandbox/email-events"
    posted = requests.post(
        control,
        json=[
            {"type": "DELIVERED", "recipient": email, "emailCampaignId": 11, "created": 1_700_000_000_000},
            {"type": "DELIVERED", "recipient": email, "emailCampaignId": 12},
            {"type": "BOUNCE", "recipient": email, "emailCampaignId": 12, "category": "HARD_BOUNCE"},
        ],
    )
    assert posted.status_code == 201
    records = posted.json()["results"]
    assert all(
        r["id"] and r["portalId"] == server.config.portal_id and r["appId"] == server.config.app_id
        for r in records
    )
    props = client.crm.contacts.basic_api.get_by_id(
        contact.id,
        properties=[
            "hs_email_delivered",
            "hs_email_last_send_date",
            "hs_email_hard_bounce_reason_enum",
            "hs_email_bad_address",
        ],
        properties_with_history=["hs_email_bad_address"],
    ).properties
    assert props["hs_email_delivered"] == "2" and props["hs_email_hard_bounce_reason_enum"] == "UNKNOWN_USER"
    assert props["hs_email_bad_address"] == "true" and props["hs_email_last_send_date"]
    bounce = receiver.wait_for(
        lambda: receiver.events(
            predicate=lambda e: (
                str(e.get("objectId")) == contact.id and e.get("propertyName") == "hs_email_bad_address"
            )
        )
    )[0]
    assert bounce["changeSource"] == "EMAIL" and "sourceId" not in bounce

    posts = receiver.wait_for(
        lambda: (
            (found := [r for r in receiver.snapshot("/email") if email in r.body])
            and len(found) == 3
            and found
        )
    )
    for post in posts:
        assert len(post.events) == 1 and post.events[0]["recipient"] == email
        assert Signature.is_valid(
            signature=post.headers["X-Hubspot-Signature-V3"],
            client_secret=SECRET,
            request_body=post.body,
            http_uri=post.url,
            signature_version="v3",
            timestamp=post.headers["X-Hubspot-Request-Timestamp"],
        )
        assert Signature.is_valid(
            signature=post.headers["X-Hubspot-Signature"],
            client_secret=SECRET,
            request_body=post.body,
            http_uri=post.url,
            http_method="POST",
            signature_version="v2",
        )

    read = client.api_request(
        {
            "method": "GET",
            "path": "/email/public/v1/events",
            "qs": {"recipient": email, "eventType": "DELIVERED", "limit": 1},
        }
    ).json()
    assert len(read["events"]) == 1 and read["hasMore"] is True and read["offset"]
    rest = client.api_request(
        {
            "method": "GET",
            "path": "/email/public/v1/events",
            "qs": {"recipient": email, "eventType": "DELIVERED", "offset": read["offset"]},
        }
    ).json()
    assert rest["hasMore"] is False and {e["emailCampaignId"] for e in read["events"] + rest["events"]} == {
        11,
        12,
    }
    window = client.api_request(
        {
            "method": "GET",
            "path": "/email/public/v1/events",
            "qs": {
                "recipient": email,
                "startTimestamp": 1_699_999_999_999,
                "endTimestamp": 1_700_000_000_001,
            },
        }
    ).json()
    assert [e["created"] for e in window["events"]] == [1_700_000_000_000]


@pytest.mark.parametrize(
    "record",
    [
        {"type": "STATUSCHANGE", "subscriptions": [{"status": "UNSUBSCRIBED"}]},
        {"type": "STATUSCHANGE", "unsubscribed": True},
        {"type": "SPAMREPORT"},
    ],
)
def test_unsubscribe_and_spam_events_opt_out(
    client: hubspot.Client, server: SandboxServer, receiver: Receiver, record: dict[str, object]
) -> None:
    email = unique_email("optout")
    contact = client.crm.contacts.basic_api.create(In(properties={"email": email}))
    assert (
        requests.post(
            f"{server.base_url}/_sandbox/email-events",
            json={**record, "recipient": email, "emailCampaignId": 5},
        ).status_code
        == 201
    )
    assert (
        client.crm.contacts.basic_api.get_by_id(contact.id, properties=["hs_email_optout"]).properties[
            "hs_email_optout"
        ]
        == "true"
    )
    event = receiver.wait_for(lambda: _optout_events(receiver, contact.id))[0]
    assert event["changeSource"] == "EMAIL"
