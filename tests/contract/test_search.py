"""Search through the official SDK: operators, numeric/datetime comparison, sorts, paging, limits."""

from __future__ import annotations

import uuid

import hubspot
import pytest
from hubspot.crm.contacts import ApiException, Filter, FilterGroup, PublicObjectSearchRequest
from hubspot.crm.contacts import SimplePublicObjectInputForCreate as In
from hubspot.crm.contacts.models import CollectionResponseWithTotalSimplePublicObjectForwardPaging

from .helpers import error_json, unique_email

pytestmark = pytest.mark.contract


@pytest.fixture(scope="module")
def tagged(client: hubspot.Client) -> tuple[str, list[str]]:
    """Five contacts sharing a unique last name, with scores 10..50 and status timestamps 1..5 days."""
    tag = f"Srch{uuid.uuid4().hex[:8]}"
    ids = []
    for i in range(5):
        props = {
            "email": unique_email("s"),
            "lastname": tag,
            "firstname": f"F{i}",
            "hubspotscore": str((i + 1) * 10),
            "contact_status_changed_at": str(1_700_000_000_000 + i * 86_400_000),
        }
        if i % 2 == 0:
            props["vertical"] = "retail"
        ids.append(client.crm.contacts.basic_api.create(In(properties=props)).id)
    return tag, ids


def _search(
    client: hubspot.Client, tag: str, *filters: Filter, **kw: object
) -> CollectionResponseWithTotalSimplePublicObjectForwardPaging:
    groups = [FilterGroup(filters=[Filter(property_name="lastname", operator="EQ", value=tag), *filters])]
    return client.crm.contacts.search_api.do_search(PublicObjectSearchRequest(filter_groups=groups, **kw))


def _names(result: CollectionResponseWithTotalSimplePublicObjectForwardPaging) -> list[str]:
    return [r.properties["firstname"] for r in result.results]


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (Filter(property_name="hubspotscore", operator="GT", value="30"), ["F3", "F4"]),
        (Filter(property_name="hubspotscore", operator="GTE", value="30"), ["F2", "F3", "F4"]),
        (Filter(property_name="hubspotscore", operator="LT", value="9.5"), []),
        (Filter(property_name="hubspotscore", operator="LTE", value="20"), ["F0", "F1"]),
        (Filter(property_name="hubspotscore", operator="NEQ", value="10"), ["F1", "F2", "F3", "F4"]),
        (
            Filter(property_name="hubspotscore", operator="BETWEEN", value="15", high_value="40"),
            ["F1", "F2", "F3"],
        ),
        (Filter(property_name="firstname", operator="IN", values=["F1", "F4", "nobody"]), ["F1", "F4"]),
        (Filter(property_name="firstname", operator="NOT_IN", values=["F1", "F4"]), ["F0", "F2", "F3"]),
        (Filter(property_name="vertical", operator="HAS_PROPERTY"), ["F0", "F2", "F4"]),
        (Filter(property_name="vertical", operator="NOT_HAS_PROPERTY"), ["F1", "F3"]),
        # datetime properties compare as instants whether the filter value is ms or ISO
        (
            Filter(property_name="contact_status_changed_at", operator="GTE", value="1700172800000"),
            ["F2", "F3", "F4"],
        ),
        (
            Filter(property_name="contact_status_changed_at", operator="LT", value="2023-11-16T00:00:00Z"),
            ["F0", "F1"],
        ),
    ],
)
def test_operators(
    client: hubspot.Client, tagged: tuple[str, list[str]], flt: Filter, expected: list[str]
) -> None:
    result = _search(client, tagged[0], flt, properties=["firstname"], limit=100)
    assert sorted(_names(result)) == expected and result.total == len(expected)


def test_numeric_not_lexicographic_and_sorts(client: hubspot.Client, tagged: tuple[str, list[str]]) -> None:
    # "100" > "20" numerically although it sorts before it as a string
    result = _search(
        client,
        tagged[0],
        properties=["firstname"],
        limit=10,
        sorts=[{"propertyName": "hubspotscore", "direction": "DESCENDING"}],
    )
    assert _names(result) == ["F4", "F3", "F2", "F1", "F0"]
    ascending = _search(client, tagged[0], properties=["firstname"], limit=10, sorts=["hubspotscore"])
    assert _names(ascending) == ["F0", "F1", "F2", "F3", "F4"]


def test_or_of_filter_groups_and_paging(client: hubspot.Client, tagged: tuple[str, list[str]]) -> None:
    tag = tagged[0]
    groups = [
        FilterGroup(
            filters=[
                Filter(property_name="lastname", operator="EQ", value=tag),
                Filter(property_name="firstname", operator="EQ", value=name),
            ]
        )
        for name in ("F0", "F3")
    ]
    either = client.crm.contacts.search_api.do_search(
        PublicObjectSearchRequest(filter_groups=groups, properties=["firstname"])
    )
    assert sorted(_names(either)) == ["F0", "F3"]
    seen, after = [], None
    while True:
        page = _search(client, tag, properties=["firstname"], limit=2, after=after)
        seen += _names(page)
        if page.paging is None:
            break
        after = page.paging.next.after
    assert sorted(seen) == ["F0", "F1", "F2", "F3", "F4"]


def test_default_properties_and_seed(client: hubspot.Client) -> None:
    result = client.crm.contacts.search_api.do_search(
        PublicObjectSearchRequest(
            filter_groups=[
                FilterGroup(filters=[Filter(property_name="contact_status", operator="EQ", value="mql")])
            ],
            limit=200,
        )
    )
    assert 0 < result.total < 500 and len(result.results) == min(200, result.total)
    assert {"createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"} <= set(
        result.results[0].properties
    )


def test_limits(client: hubspot.Client) -> None:
    search = client.crm.contacts.search_api.do_search
    for request in (
        PublicObjectSearchRequest(limit=201),
        PublicObjectSearchRequest(after="10000"),
        PublicObjectSearchRequest(
            filter_groups=[
                FilterGroup(filters=[Filter(property_name="no_such_prop", operator="EQ", value="x")])
            ]
        ),
        PublicObjectSearchRequest(
            filter_groups=[FilterGroup(filters=[Filter(property_name="email", operator="HAS_PROPERTY")])] * 6
        ),
    ):
        with pytest.raises(ApiException) as info:
            search(request)
        assert info.value.status == 400 and error_json(info.value)["category"] == "VALIDATION_ERROR"
    last_page = search(PublicObjectSearchRequest(after="9999", limit=200))
    assert last_page.paging is None  # nothing is served past the 10,000th result
