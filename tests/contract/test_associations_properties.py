"""Associations v4, properties v3, owners and pipelines through the official SDK."""

from __future__ import annotations

import uuid

import hubspot
import pytest
from hubspot.crm.associations.v4 import ApiException as AssocError
from hubspot.crm.associations.v4 import (
    AssociationSpec,
    BatchInputPublicAssociationMultiArchive,
    BatchInputPublicAssociationMultiPost,
    BatchInputPublicDefaultAssociationMultiPost,
    BatchInputPublicFetchAssociationsBatchRequest,
    PublicAssociationMultiArchive,
    PublicAssociationMultiPost,
    PublicDefaultAssociationMultiPost,
    PublicFetchAssociationsBatchRequest,
    PublicObjectId,
)
from hubspot.crm.associations.v4.models import (
    BatchResponseLabelsBetweenObjectPair,
    BatchResponsePublicAssociationMultiWithLabelWithErrors,
    BatchResponsePublicDefaultAssociation,
    CollectionResponseMultiAssociatedObjectWithLabelForwardPaging,
    LabelsBetweenObjectPair,
)
from hubspot.crm.companies import SimplePublicObjectInputForCreate as CompanyIn
from hubspot.crm.contacts import SimplePublicObjectInputForCreate as ContactIn
from hubspot.crm.properties import ApiException as PropertyError
from hubspot.crm.properties import (
    BatchInputPropertyCreate,
    BatchReadInputPropertyName,
    OptionInput,
    PropertyCreate,
    PropertyGroupCreate,
    PropertyGroupUpdate,
    PropertyName,
    PropertyUpdate,
)
from hubspot.crm.properties.models import BatchResponsePropertyWithErrors, ModelProperty, PropertyGroup

from .helpers import error_json, unique_email

pytestmark = pytest.mark.contract


def _contact(client: hubspot.Client) -> str:
    return client.crm.contacts.basic_api.create(ContactIn(properties={"email": unique_email("a")})).id


def _company(client: hubspot.Client) -> str:
    return client.crm.companies.basic_api.create(
        CompanyIn(properties={"name": f"A {uuid.uuid4().hex[:6]}"})
    ).id


def _types(client: hubspot.Client, from_type: str, from_id: str, to_type: str) -> dict[str, list[int]]:
    page = client.crm.associations.v4.basic_api.get_page(from_type, from_id, to_type)
    assert isinstance(page, CollectionResponseMultiAssociatedObjectWithLabelForwardPaging)
    return {r.to_object_id: sorted(t.type_id for t in r.association_types) for r in page.results}


def test_default_and_labelled_associations(client: hubspot.Client) -> None:
    api = client.crm.associations.v4.basic_api
    contact, first, second = _contact(client), _company(client), _company(client)
    default = api.create_default("contacts", contact, "companies", first)
    assert isinstance(default, BatchResponsePublicDefaultAssociation)
    assert {r.association_spec.association_type_id for r in default.results} == {279, 280}
    # the first company of a contact becomes its primary (assumed, see docs/sandbox.md)
    assert _types(client, "contacts", contact, "companies") == {first: [1, 279]}
    assert _types(client, "companies", first, "contacts") == {contact: [2, 280]}

    labelled, status, _ = api.create_with_http_info(
        "contacts",
        contact,
        "companies",
        second,
        [AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=1)],
    )
    assert status == 201 and isinstance(labelled, LabelsBetweenObjectPair)
    assert (labelled.from_object_type_id, labelled.to_object_type_id, labelled.labels) == (
        "0-1",
        "0-2",
        ["Primary"],
    )
    # a contact has one primary company: moving it keeps the unlabeled association with the first
    assert _types(client, "contacts", contact, "companies") == {first: [279], second: [1, 279]}

    got = client.crm.contacts.basic_api.get_by_id(contact, associations=["companies"])
    assert {(a.id, a.type) for a in got.associations["companies"].results} == {
        (first, "contact_to_company_unlabeled"),
        (second, "contact_to_company"),
        (second, "contact_to_company_unlabeled"),
    }

    api.archive("contacts", contact, "companies", first)
    assert set(_types(client, "contacts", contact, "companies")) == {second}
    with pytest.raises(AssocError) as info:
        api.create(
            "contacts",
            contact,
            "companies",
            second,
            [AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=3)],
        )
    assert info.value.status == 400


def test_batch_associations(client: hubspot.Client) -> None:
    batch = client.crm.associations.v4.batch_api
    contacts, company = [_contact(client) for _ in range(3)], _company(client)
    created, status, _ = batch.create_with_http_info(
        "contacts",
        "companies",
        BatchInputPublicAssociationMultiPost(
            inputs=[
                PublicAssociationMultiPost(
                    _from=PublicObjectId(id=c),
                    to=PublicObjectId(id=company),
                    types=[AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=279)],
                )
                for c in contacts[:2]
            ]
        ),
    )
    assert (
        status == 201
        and isinstance(created, BatchResponseLabelsBetweenObjectPair)
        and len(created.results) == 2
    )
    defaults = batch.create_default(
        "contacts",
        "companies",
        BatchInputPublicDefaultAssociationMultiPost(
            inputs=[
                PublicDefaultAssociationMultiPost(
                    _from=PublicObjectId(id=contacts[2]), to=PublicObjectId(id=company)
                )
            ]
        ),
    )
    assert defaults.status == "COMPLETE"

    read, status, _ = batch.get_page_with_http_info(
        "companies",
        "contacts",
        BatchInputPublicFetchAssociationsBatchRequest(
            inputs=[
                PublicFetchAssociationsBatchRequest(id=company),
                PublicFetchAssociationsBatchRequest(id=contacts[0]),
            ]
        ),
    )
    assert status == 207 and isinstance(read, BatchResponsePublicAssociationMultiWithLabelWithErrors)
    assert sorted(t.to_object_id for t in read.results[0].to) == sorted(contacts)
    assert read.num_errors == 1

    batch.archive(
        "contacts",
        "companies",
        BatchInputPublicAssociationMultiArchive(
            inputs=[
                PublicAssociationMultiArchive(
                    _from=PublicObjectId(id=contacts[0]), to=[PublicObjectId(id=company)]
                )
            ]
        ),
    )
    assert set(_types(client, "companies", company, "contacts")) == set(contacts[1:])

    too_many = [PublicFetchAssociationsBatchRequest(id=str(i)) for i in range(1, 1002)]
    with pytest.raises(AssocError) as info:
        batch.get_page(
            "contacts", "companies", BatchInputPublicFetchAssociationsBatchRequest(inputs=too_many)
        )
    assert info.value.status == 400 and error_json(info.value)["category"] == "VALIDATION_ERROR"


def test_properties_and_groups(client: hubspot.Client) -> None:
    props, groups = client.crm.properties.core_api, client.crm.properties.groups_api
    group_name = f"grp_{uuid.uuid4().hex[:6]}"
    group = groups.create("contacts", PropertyGroupCreate(name=group_name, label="Worker", display_order=-1))
    assert isinstance(group, PropertyGroup) and group.archived is False
    assert groups.update("contacts", group_name, PropertyGroupUpdate(label="Worker 2")).label == "Worker 2"
    assert group_name in {g.name for g in groups.get_all("contacts").results}

    name = f"tier_{uuid.uuid4().hex[:6]}"
    created = props.create(
        "contacts",
        PropertyCreate(
            name=name,
            label="Tier",
            type="enumeration",
            field_type="select",
            group_name=group_name,
            options=[OptionInput(label="Gold", value="gold", hidden=False, display_order=0)],
        ),
    )
    assert isinstance(created, ModelProperty) and [o.value for o in created.options] == ["gold"]
    assert created.modification_metadata.read_only_value is False
    with pytest.raises(PropertyError) as info:
        props.create(
            "contacts",
            PropertyCreate(
                name=name, label="Tier", type="enumeration", field_type="select", group_name=group_name
            ),
        )
    assert info.value.status == 409

    with pytest.raises(hubspot.crm.contacts.ApiException):
        client.crm.contacts.basic_api.create(ContactIn(properties={name: "silver"}))
    props.update(
        "contacts",
        name,
        PropertyUpdate(
            options=[
                OptionInput(label="Gold", value="gold", hidden=False),
                OptionInput(label="Silver", value="silver", hidden=False),
            ]
        ),
    )
    contact = client.crm.contacts.basic_api.create(ContactIn(properties={name: "silver"}))
    assert contact.properties[name] == "silver"

    assert props.get_by_name("contacts", "hubspot_owner_id").referenced_object_type == "OWNER"
    assert {"email", "hs_email_optout", "contact_status"} <= {
        p.name for p in props.get_all("contacts").results
    }
    read, status, _ = client.crm.properties.batch_api.read_with_http_info(
        "contacts",
        BatchReadInputPropertyName(
            archived=False, inputs=[PropertyName(name="email"), PropertyName(name="nope")]
        ),
    )
    assert status == 207 and isinstance(read, BatchResponsePropertyWithErrors) and len(read.results) == 1
    other = f"other_{uuid.uuid4().hex[:6]}"
    made = client.crm.properties.batch_api.create(
        "companies",
        BatchInputPropertyCreate(
            inputs=[
                PropertyCreate(
                    name=other,
                    label="Other",
                    type="string",
                    field_type="text",
                    group_name="companyinformation",
                )
            ]
        ),
    )
    assert made.results[0].name == other


def test_owners_and_pipelines(client: hubspot.Client) -> None:
    owners = client.crm.owners.owners_api.get_page(limit=100)
    ids = {o.id: o for o in owners.results}
    assert set(ids) == {"101", "102", "201", "202", "301", "302", "900"}
    assert ids["101"].teams[0].name == "marketplace" and ids["201"].teams[0].name == "retail"
    assert client.crm.owners.owners_api.get_by_id(101).email == ids["101"].email
    assert client.crm.owners.owners_api.get_by_id(1101, id_property="userId").id == "101"
    paged = client.crm.owners.owners_api.get_page(limit=3)
    assert len(paged.results) == 3 and paged.paging.next.after

    pipeline = client.crm.pipelines.pipelines_api.get_by_id("deals", "default")
    assert [s.id for s in pipeline.stages] == [
        "appointmentscheduled",
        "qualifiedtobuy",
        "presentationscheduled",
        "decisionmakerboughtin",
        "contractsent",
        "closedwon",
        "closedlost",
    ]
    assert client.crm.pipelines.pipelines_api.get_all("deals").results[0].id == "default"
