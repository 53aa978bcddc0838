"""CRM objects v3 through the official SDK: CRUD, history, paging, batch, validation and error mapping."""

from __future__ import annotations

import json

import hubspot
import pytest
import requests
from hubspot.crm.contacts import (
    ApiException,
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchInputSimplePublicObjectId,
    BatchReadInputSimplePublicObjectId,
    PublicMergeInput,
    SimplePublicObjectBatchInput,
    SimplePublicObjectBatchInputForCreate,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectId,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)
from hubspot.crm.contacts.exceptions import NotFoundException
from hubspot.crm.contacts.models import (
    BatchResponseSimplePublicObject,
    BatchResponseSimplePublicObjectWithErrors,
    BatchResponseSimplePublicUpsertObject,
    SimplePublicObject,
    SimplePublicObjectWithAssociations,
)

from sandbox.server import SandboxServer

from .conftest import APP_ID, APP_TOKEN
from .helpers import as_model, error_json, unique_email

pytestmark = pytest.mark.contract


def _create(client: hubspot.Client, **props: str) -> SimplePublicObject:
    props.setdefault("email", unique_email())
    return client.crm.contacts.basic_api.create(SimplePublicObjectInputForCreate(properties=props))


def test_create_get_update_archive_roundtrip(client: hubspot.Client) -> None:
    email = unique_email("Round").upper()
    created, status, _ = client.crm.contacts.basic_api.create_with_http_info(
        SimplePublicObjectInputForCreate(
            properties={"email": email, "firstname": "Ada", "hubspotscore": "42"}
        )
    )
    assert status == 201 and isinstance(created, SimplePublicObject)
    assert created.properties["email"] == email.lower()  # HubSpot lowercases emails
    assert created.properties["hs_object_id"] == created.id
    assert created.properties["createdate"] and created.created_at is not None

    updated = client.crm.contacts.basic_api.update(
        created.id, SimplePublicObjectInput(properties={"firstname": "Grace"})
    )
    assert updated.properties["firstname"] == "Grace"
    assert updated.updated_at >= created.updated_at

    got = client.crm.contacts.basic_api.get_by_id(
        created.id,
        properties=["firstname", "hubspotscore", "lastname"],
        properties_with_history=["firstname"],
    )
    assert isinstance(got, SimplePublicObjectWithAssociations)
    assert got.properties["hubspotscore"] == "42" and got.properties["lastname"] is None
    history = got.properties_with_history["firstname"]
    assert [h.value for h in history] == ["Grace", "Ada"]  # newest first
    assert {(h.source_type, h.source_id) for h in history} == {("INTEGRATION", str(APP_ID))}
    assert history[0].timestamp >= history[1].timestamp

    by_email = client.crm.contacts.basic_api.get_by_id(email.lower(), id_property="email")
    assert by_email.id == created.id

    client.crm.contacts.basic_api.archive(created.id)
    with pytest.raises(NotFoundException) as info:
        client.crm.contacts.basic_api.get_by_id(created.id)
    assert info.value.status == 404 and error_json(info.value)["category"] == "OBJECT_NOT_FOUND"
    assert client.crm.contacts.basic_api.get_by_id(created.id, archived=True).archived is True


def test_rep_writes_are_recorded_as_crm_ui(client: hubspot.Client, rep: hubspot.Client) -> None:
    contact = _create(client, firstname="Before")
    rep.crm.contacts.basic_api.update(contact.id, SimplePublicObjectInput(properties={"firstname": "After"}))
    got = client.crm.contacts.basic_api.get_by_id(contact.id, properties_with_history=["firstname"])
    newest = got.properties_with_history["firstname"][0]
    assert (newest.value, newest.source_type, newest.source_id, newest.updated_by_user_id) == (
        "After",
        "CRM_UI",
        "userId:1101",
        1101,
    )


def test_values_are_stored_as_strings_and_datetimes_normalised(server: SandboxServer) -> None:
    email = unique_email()
    response = requests.post(
        f"{server.base_url}/crm/v3/objects/contacts",
        headers={"Authorization": f"Bearer {APP_TOKEN}"},
        json={
            "properties": {
                "email": email,
                "hubspotscore": 150,
                "lead_gen_suppressed": True,
                "contact_status_changed_at": "1700000000000",
            }
        },
    )
    assert response.status_code == 201, response.text
    props = response.json()["properties"]
    assert props["hubspotscore"] == "150" and props["lead_gen_suppressed"] == "true"
    assert props["contact_status_changed_at"] == "2023-11-14T22:13:20.000Z"


def test_get_page_walks_every_contact_once(client: hubspot.Client, server: SandboxServer) -> None:
    everyone = client.crm.contacts.get_all(properties=["email"])
    ids = [c.id for c in everyone]
    assert len(ids) == len(set(ids)) == server.sandbox.portal.store.count("contacts") >= 500
    page = client.crm.contacts.basic_api.get_page(limit=3, associations=["companies"])
    assert len(page.results) == 3 and page.paging.next.after
    assert page.results[0].associations["companies"].results[0].type in (
        "contact_to_company",
        "contact_to_company_unlabeled",
    )
    with_history = client.crm.contacts.basic_api.get_page(
        limit=100, properties_with_history=["contact_status"]
    )
    assert len(with_history.results) == 50  # HubSpot caps pages with history at 50
    seeded = with_history.results[0].properties_with_history["contact_status"]
    assert seeded and seeded[-1].value == "prospect" and seeded[-1].source_type == "INTEGRATION"


@pytest.mark.parametrize(
    ("props", "code"),
    [
        ({"no_such_property": "x"}, "PROPERTY_DOESNT_EXIST"),
        ({"lifecyclestage": "bogus"}, "INVALID_OPTION"),
        ({"hs_email_optout": "true"}, "READ_ONLY_VALUE"),
        ({"hubspotscore": "lots"}, "INVALID_FLOAT"),
    ],
)
def test_invalid_values_answer_400_validation_error(
    client: hubspot.Client, props: dict[str, str], code: str
) -> None:
    with pytest.raises(ApiException) as info:
        _create(client, **props)
    body = error_json(info.value)
    assert info.value.status == 400 and body["category"] == "VALIDATION_ERROR"
    assert body["message"].startswith("Property values were not valid: ")
    listed = json.loads(body["message"].split(": ", 1)[1])
    assert listed[0]["error"] == code and listed[0]["name"] == next(iter(props))
    assert as_model(client.crm.contacts.basic_api, info.value.body, "Error").category == "VALIDATION_ERROR"


def test_duplicate_email_is_409_conflict(client: hubspot.Client) -> None:
    first = _create(client)
    with pytest.raises(ApiException) as info:
        _create(client, email=first.properties["email"])
    body = error_json(info.value)
    assert info.value.status == 409 and body["category"] == "CONFLICT"
    assert body["message"] == f"Contact already exists. Existing ID: {first.id}"


def test_unknown_ids_are_404_with_hubspot_body(client: hubspot.Client) -> None:
    for call in (
        lambda: client.crm.contacts.basic_api.get_by_id("987654321"),
        lambda: client.crm.contacts.basic_api.update("987654321", SimplePublicObjectInput(properties={})),
    ):
        with pytest.raises(NotFoundException) as info:
            call()
        body = as_model(client.crm.contacts.basic_api, info.value.body, "Error")
        assert body.category == "OBJECT_NOT_FOUND" and body.correlation_id


def test_batch_create_read_update_upsert_archive(client: hubspot.Client) -> None:
    batch = client.crm.contacts.batch_api
    emails = [unique_email("b") for _ in range(3)]
    created, status, _ = batch.create_with_http_info(
        BatchInputSimplePublicObjectBatchInputForCreate(
            inputs=[
                SimplePublicObjectBatchInputForCreate(properties={"email": e}, object_write_trace_id=f"t{i}")
                for i, e in enumerate(emails)
            ]
        )
    )
    assert (
        status == 201
        and isinstance(created, BatchResponseSimplePublicObject)
        and created.status == "COMPLETE"
    )
    ids = [r.id for r in created.results]
    assert [r.object_write_trace_id for r in created.results] == ["t0", "t1", "t2"]

    read = batch.read(
        BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id=i) for i in ids],
            properties=["email"],
            properties_with_history=["email"],
        )
    )
    assert sorted(r.properties["email"] for r in read.results) == sorted(emails)
    assert all(r.properties_with_history["email"][0].source_type == "INTEGRATION" for r in read.results)

    updated, status, _ = batch.update_with_http_info(
        BatchInputSimplePublicObjectBatchInput(
            inputs=[
                SimplePublicObjectBatchInput(id=ids[0], properties={"firstname": "One"}),
                SimplePublicObjectBatchInput(id="999999991", properties={"firstname": "Ghost"}),
            ]
        )
    )
    assert status == 207 and isinstance(updated, BatchResponseSimplePublicObjectWithErrors)
    assert updated.num_errors == 1 and updated.errors[0].category == "OBJECT_NOT_FOUND"
    assert updated.errors[0].context == {"ids": ["999999991"]}
    assert updated.results[0].properties["firstname"] == "One"

    new_email = unique_email("upsert")
    upserted = batch.upsert(
        BatchInputSimplePublicObjectBatchInputUpsert(
            inputs=[
                SimplePublicObjectBatchInputUpsert(
                    id=emails[1], id_property="email", properties={"firstname": "Two"}
                ),
                SimplePublicObjectBatchInputUpsert(
                    id=new_email, id_property="email", properties={"firstname": "New"}
                ),
            ]
        )
    )
    assert isinstance(upserted, BatchResponseSimplePublicUpsertObject)
    flags = {r.properties.get("email") or r.id: r.new for r in upserted.results}
    assert sorted(flags.values()) == [False, True]
    assert (
        client.crm.contacts.basic_api.get_by_id(new_email, id_property="email").properties["firstname"]
        == "New"
    )

    batch.archive(BatchInputSimplePublicObjectId(inputs=[SimplePublicObjectId(id=i) for i in ids]))
    read_after, status, _ = batch.read_with_http_info(
        BatchReadInputSimplePublicObjectId(
            inputs=[SimplePublicObjectId(id=ids[0])], properties=[], properties_with_history=[]
        )
    )
    assert status == 207 and read_after.results == [] and read_after.errors[0].context["ids"] == [ids[0]]


def test_batch_limits(client: hubspot.Client) -> None:
    too_many = [SimplePublicObjectId(id=str(i)) for i in range(1, 102)]
    with pytest.raises(ApiException) as info:
        client.crm.contacts.batch_api.read(
            BatchReadInputSimplePublicObjectId(
                inputs=too_many, properties=["email"], properties_with_history=[]
            )
        )
    assert info.value.status == 400 and error_json(info.value)["category"] == "VALIDATION_ERROR"
    with pytest.raises(ApiException) as info:
        client.crm.contacts.batch_api.read(
            BatchReadInputSimplePublicObjectId(
                inputs=too_many[:51], properties=[], properties_with_history=["email"]
            )
        )
    assert error_json(info.value)["message"] == (
        "The maximum number of inputs supported in a batch request for property histories is 50. "
        "Please reduce the number of items and try again"
    )
    ok = client.crm.contacts.batch_api.read(
        BatchReadInputSimplePublicObjectId(
            inputs=too_many[:50], properties=[], properties_with_history=["email"]
        )
    )
    assert ok is not None


def test_merge_redirects_the_merged_id(client: hubspot.Client) -> None:
    primary, secondary = _create(client), _create(client, firstname="Merged", hubspotscore="77")
    merged = client.crm.contacts.basic_api.merge(
        PublicMergeInput(primary_object_id=primary.id, object_id_to_merge=secondary.id)
    )
    assert isinstance(merged, SimplePublicObject) and merged.id == primary.id
    via_old_id = client.crm.contacts.basic_api.get_by_id(
        secondary.id, properties=["firstname", "hubspotscore"]
    )
    assert via_old_id.id == primary.id and via_old_id.properties["firstname"] == "Merged"


def test_lifecyclestage_only_moves_forward_unless_cleared(client: hubspot.Client) -> None:
    contact = _create(client, lifecyclestage="customer")
    api = client.crm.contacts.basic_api
    api.update(contact.id, SimplePublicObjectInput(properties={"lifecyclestage": "lead"}))
    assert api.get_by_id(contact.id, properties=["lifecyclestage"]).properties["lifecyclestage"] == "customer"
    api.update(contact.id, SimplePublicObjectInput(properties={"lifecyclestage": ""}))
    api.update(contact.id, SimplePublicObjectInput(properties={"lifecyclestage": "lead"}))
    assert api.get_by_id(contact.id, properties=["lifecyclestage"]).properties["lifecyclestage"] == "lead"


def test_companies_deals_tasks_notes(client: hubspot.Client) -> None:
    from hubspot.crm.companies import SimplePublicObjectInputForCreate as CompanyIn
    from hubspot.crm.deals import ApiException as DealError
    from hubspot.crm.deals import SimplePublicObjectInputForCreate as DealIn
    from hubspot.crm.objects.notes import SimplePublicObjectInputForCreate as NoteIn
    from hubspot.crm.objects.tasks import ApiException as TaskError
    from hubspot.crm.objects.tasks import PublicAssociationsForObject, PublicObjectId
    from hubspot.crm.objects.tasks import SimplePublicObjectInputForCreate as TaskIn
    from hubspot.crm.objects.tasks.models import AssociationSpec

    company = client.crm.companies.basic_api.create(
        CompanyIn(properties={"name": "Contract Co", "domain": "cc.example"})
    )
    assert company.properties["hs_lastmodifieddate"] and company.properties["name"] == "Contract Co"
    deal = client.crm.deals.basic_api.create(
        DealIn(
            properties={
                "dealname": "Contract deal",
                "pipeline": "default",
                "dealstage": "qualifiedtobuy",
                "amount": "1200",
            }
        )
    )
    assert deal.properties["dealstage"] == "qualifiedtobuy"
    with pytest.raises(DealError) as info:
        client.crm.deals.basic_api.create(DealIn(properties={"dealname": "x", "dealstage": "nowhere"}))
    assert info.value.status == 400

    contact = _create(client)
    task = client.crm.objects.tasks.basic_api.create(
        TaskIn(
            properties={
                "hs_timestamp": "2030-01-01T00:00:00Z",
                "hs_task_subject": "Call",
                "hs_task_status": "NOT_STARTED",
            },
            associations=[
                PublicAssociationsForObject(
                    to=PublicObjectId(id=contact.id),
                    types=[AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=204)],
                )
            ],
        )
    )
    assert task.properties["hs_createdate"]
    with pytest.raises(TaskError) as missing_timestamp:
        client.crm.objects.tasks.basic_api.create(TaskIn(properties={"hs_task_subject": "No due date"}))
    assert missing_timestamp.value.status == 400
    note = client.crm.objects.notes.basic_api.create(
        NoteIn(properties={"hs_timestamp": "1700000000000", "hs_note_body": "hello"})
    )
    assert note.properties["hs_object_id"] == note.id
    linked = client.crm.associations.v4.basic_api.get_page("contacts", contact.id, "tasks")
    assert [(r.to_object_id, r.association_types[0].type_id) for r in linked.results] == [(task.id, 203)]
    generic = client.crm.objects.basic_api.get_by_id("0-27", task.id, properties=["hs_task_subject"])
    assert generic.properties["hs_task_subject"] == "Call"
