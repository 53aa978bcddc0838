"""Auth, rate limits (with an injected clock instead of sleeping), fault injection, stats and reset,
against a second sandbox with tight limits."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
from hubspot.crm.contacts import ApiException, Filter, FilterGroup, PublicObjectSearchRequest
from hubspot.crm.contacts import SimplePublicObjectInputForCreate as In
from hubspot.crm.contacts.exceptions import ServiceException, UnauthorizedException

from sandbox.app import create_app
from sandbox.config import SandboxConfig
from sandbox.server import SandboxServer

from .conftest import make_client
from .helpers import as_model, error_json, unique_email

pytestmark = pytest.mark.contract
TOKEN = "limits-token"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def tight(clock: FakeClock) -> Iterator[SandboxServer]:
    config = SandboxConfig(
        port=0, app_token=TOKEN, rate_limit="5/10s", search_rate_per_s=2, seed="none", fault_timeout_s=0.2
    )
    with SandboxServer(config, app=create_app(config, clock=clock)) as srv:
        yield srv


@pytest.fixture()
def fresh(tight: SandboxServer, clock: FakeClock) -> SandboxServer:
    clock.now += 60  # a new window for every test
    assert requests.post(f"{tight.base_url}/_sandbox/reset").status_code == 200
    return tight


def test_missing_or_wrong_token_is_401(fresh: SandboxServer) -> None:
    for token in ("wrong-token", ""):
        api = make_client(fresh.base_url, token).crm.contacts.basic_api
        with pytest.raises(UnauthorizedException) as info:
            api.get_page()
        error = as_model(api, info.value.body, "Error")
        assert error.category == "INVALID_AUTHENTICATION"
        assert error.message.startswith("Authentication credentials not found.")


def test_rolling_window_429_then_reset(fresh: SandboxServer, clock: FakeClock) -> None:
    api = make_client(fresh.base_url, TOKEN).crm.contacts.basic_api
    remaining = []
    for _ in range(5):
        _, status, headers = api.get_page_with_http_info()
        assert headers["X-HubSpot-RateLimit-Max"] == "5"
        assert headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
        assert int(headers["X-HubSpot-RateLimit-Daily-Remaining"]) < int(headers["X-HubSpot-RateLimit-Daily"])
        remaining.append(int(headers["X-HubSpot-RateLimit-Remaining"]))
    assert remaining == [4, 3, 2, 1, 0]
    with pytest.raises(ApiException) as info:
        api.get_page()
    body = error_json(info.value)
    assert info.value.status == 429 and info.value.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert body["errorType"] == "RATE_LIMIT" and body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert body["message"] == "You have reached your ten_secondly_rolling limit."
    assert body["correlationId"] and body["requestId"]

    reps = make_client(fresh.base_url, "user-7").crm.contacts.basic_api
    assert reps.get_page() is not None  # reps have their own bucket
    clock.now += 10.01
    assert api.get_page() is not None
    assert requests.get(f"{fresh.base_url}/_sandbox/stats").json()["rate_limited"] == 1


def test_search_limit_is_per_second_without_headers(fresh: SandboxServer, clock: FakeClock) -> None:
    search = make_client(fresh.base_url, TOKEN).crm.contacts.search_api
    request = PublicObjectSearchRequest(
        filter_groups=[FilterGroup(filters=[Filter(property_name="email", operator="HAS_PROPERTY")])]
    )
    for _ in range(2):
        _, _, headers = search.do_search_with_http_info(request)
        assert not any(h.lower().startswith("x-hubspot-ratelimit") for h in headers)
    with pytest.raises(ApiException) as info:
        search.do_search(request)
    assert info.value.status == 429 and error_json(info.value)["errorType"] == "RATE_LIMIT"
    clock.now += 1.0
    assert search.do_search(request).total == 0
    # searching did not spend the ten-second budget
    _, _, headers = make_client(fresh.base_url, TOKEN).crm.contacts.basic_api.get_page_with_http_info()
    assert headers["X-HubSpot-RateLimit-Remaining"] == "4"


def test_fault_rules_count_status_latency_timeout(fresh: SandboxServer) -> None:
    base = fresh.base_url
    api = make_client(base, TOKEN).crm.contacts.basic_api
    rules = {
        "rules": [
            {"method": "GET", "path": r"^/crm/v3/objects/contacts$", "status": 503, "rate": 1.0, "count": 2},
            {"method": "POST", "path": "/crm/v3/objects/contacts$", "status": 429},
            {"method": "*", "path": "/crm/v3/properties/", "status": None, "latency_ms": 150},
            {"method": "GET", "path": "/crm/v3/owners", "timeout": True},
        ]
    }
    assert requests.post(f"{base}/_sandbox/faults", json=rules).status_code == 200
    for _ in range(2):
        with pytest.raises(ServiceException) as info:
            api.get_page()
        assert info.value.status == 503 and error_json(info.value)["status"] == "error"
    assert api.get_page() is not None  # count exhausted
    with pytest.raises(ApiException) as info:
        api.create(In(properties={"email": unique_email()}))
    assert info.value.status == 429 and error_json(info.value)["policyName"] == "TEN_SECONDLY_ROLLING"
    client = make_client(base, TOKEN)
    started = time.monotonic()
    client.crm.properties.core_api.get_all("contacts")
    assert time.monotonic() - started >= 0.15
    owners = requests.get(f"{base}/crm/v3/owners", headers={"Authorization": f"Bearer {TOKEN}"})
    assert owners.status_code == 504
    stats = requests.get(f"{base}/_sandbox/stats").json()
    assert stats["faults_served"] == 5
    assert requests.post(f"{base}/_sandbox/faults", json={"rules": [{"path": "("}]}).status_code == 400
    assert requests.delete(f"{base}/_sandbox/faults").json() == {"rules": []}
    assert api.create(In(properties={"email": unique_email()})) is not None


def test_stats_templates_and_reset(fresh: SandboxServer) -> None:
    base = fresh.base_url
    client = make_client(base, TOKEN)
    created = client.crm.contacts.basic_api.create(In(properties={"email": unique_email()}))
    client.crm.contacts.basic_api.get_by_id(created.id)
    client.crm.associations.v4.basic_api.get_page("contact", created.id, "0-2")
    requests.get(f"{base}/_sandbox/objects/contacts")  # control endpoints are not counted
    stats = requests.get(f"{base}/_sandbox/stats").json()
    assert stats["calls"] == {
        "GET /crm/v3/objects/contacts/{id}": 1,
        "POST /crm/v3/objects/contacts": 1,
        "GET /crm/v4/objects/contacts/{id}/associations/companies": 1,
    }
    assert stats["total_calls"] == 3 and stats["webhooks"]["not_sent"] >= 2  # no webhook URL configured
    assert stats["webhooks"]["delivered"] == 0 and stats["webhooks"]["pending"] == 0

    assert requests.get(f"{base}/_sandbox/objects/contacts").json()["total"] == 1
    requests.post(f"{base}/_sandbox/reset")
    assert requests.get(f"{base}/_sandbox/objects/contacts").json()["total"] == 0
    assert requests.get(f"{base}/_sandbox/stats").json()["total_calls"] == 0


def test_control_patch_sets_read_only_properties_as_a_source(fresh: SandboxServer) -> None:
    client = make_client(fresh.base_url, TOKEN)
    contact = client.crm.contacts.basic_api.create(In(properties={"email": unique_email()}))
    body = requests.patch(
        f"{fresh.base_url}/_sandbox/objects/contacts/{contact.id}",
        json={"properties": {"hs_sequences_is_enrolled": "true"}, "sourceType": "SEQUENCES"},
    ).json()
    assert body["properties"]["hs_sequences_is_enrolled"] == "true"
    assert body["propertiesWithHistory"]["hs_sequences_is_enrolled"][0]["sourceType"] == "SEQUENCES"


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError):
        SandboxConfig(rate_limit="lots")
    with pytest.raises(ValueError):
        SandboxConfig(seed="everything")
    assert SandboxConfig(rate_limit="none").parsed_rate_limit is None
    assert "secret" not in repr(SandboxConfig(client_secret="secret", app_token="secret"))
