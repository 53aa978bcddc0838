"""Associations v4: /crm/v4/objects/... (single pair) and /crm/v4/associations/... (batch, labels)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from .ctx import actor, current, json_body
from .errors import HubSpotError, standard_error, unknown_object_type, validation
from .objecttypes import ObjectType, assoc_type, assoc_types_between, resolve_type
from .timeutil import iso_from_ms, now_ms

__all__ = ["bp"]

bp = Blueprint("associations", __name__)
MAX_READ = 1000
MAX_WRITE = 2000  # assumed; HubSpot documents only the 1000-id batch read limit
MAX_PAGE = 500


def _type(name: str) -> ObjectType:
    found = resolve_type(name)
    if found is None:
        raise unknown_object_type(name)
    return found


def _id(raw: Any) -> int:
    text = str(raw if raw is not None else "")
    if not text.isdigit():
        raise validation(f"Invalid object id {text!r}; object ids are numeric.")
    return int(text)


def _window() -> dict[str, str]:
    stamp = iso_from_ms(now_ms())
    return {"startedAt": stamp, "completedAt": stamp}


def _spec_json(from_type: str, type_id: int) -> dict[str, Any]:
    found = assoc_type(from_type, type_id)
    return {"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": found.label if found else None}


def _labels_pair(from_t: ObjectType, from_id: int, to_t: ObjectType, to_id: int) -> dict[str, Any]:
    types = current().portal.store.associations(from_t.name, from_id, to_t.name).get(to_id, set())
    labels = sorted({lbl for t in types if (lbl := _spec_json(from_t.name, t)["label"])})
    return {
        "fromObjectTypeId": from_t.type_id,
        "fromObjectId": from_id,
        "toObjectTypeId": to_t.type_id,
        "toObjectId": to_id,
        "labels": labels,
    }


def _type_ids(specs: Any) -> list[int]:
    if not isinstance(specs, list) or not specs:
        raise validation("Some required fields were not set: [associationTypeId]")
    ids = []
    for spec in specs:
        category = spec.get("associationCategory")
        if category not in ("HUBSPOT_DEFINED", "USER_DEFINED", "INTEGRATOR_DEFINED"):
            raise validation(f"Invalid associationCategory {category!r}.")
        ids.append(int(spec.get("associationTypeId", 0)))
    return ids


def _targets_json(from_t: ObjectType, from_id: int, to_t: ObjectType) -> list[dict[str, Any]]:
    targets = current().portal.store.associations(from_t.name, from_id, to_t.name)
    return [
        {"toObjectId": to_id, "associationTypes": [_spec_json(from_t.name, t) for t in sorted(types)]}
        for to_id, types in targets.items()
    ]


def _default_results(
    from_t: ObjectType, from_id: int, to_t: ObjectType, to_id: int, type_id: int
) -> list[dict[str, Any]]:
    found = assoc_type(from_t.name, type_id)
    reverse = found.reverse_id if found else type_id
    return [
        {
            "from": {"id": str(from_id)},
            "to": {"id": str(to_id)},
            "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id},
        },
        {
            "from": {"id": str(to_id)},
            "to": {"id": str(from_id)},
            "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": reverse},
        },
    ]


# ---- single pair ------------------------------------------------------------
_OBJ = "/crm/v4/objects/<from_type>/<object_id>/associations"


@bp.put(_OBJ + "/default/<to_type>/<to_id>")
def create_default(from_type: str, object_id: str, to_type: str, to_id: str) -> Response:
    from_t, to_t = _type(from_type), _type(to_type)
    fid, tid = _id(object_id), _id(to_id)
    type_id = current().portal.store.associate_default(from_t.name, fid, to_t.name, tid, actor())
    return jsonify(
        {"status": "COMPLETE", "results": _default_results(from_t, fid, to_t, tid, type_id), **_window()}
    )


@bp.put(_OBJ + "/<to_type>/<to_id>")
def create(from_type: str, object_id: str, to_type: str, to_id: str) -> tuple[Response, int]:
    from_t, to_t = _type(from_type), _type(to_type)
    fid, tid = _id(object_id), _id(to_id)
    current().portal.store.associate(from_t.name, fid, to_t.name, tid, _type_ids(json_body([])), actor())
    return jsonify(_labels_pair(from_t, fid, to_t, tid)), 201


@bp.get(_OBJ + "/<to_type>")
def get_page(from_type: str, object_id: str, to_type: str) -> Response:
    from_t, to_t = _type(from_type), _type(to_type)
    everything = _targets_json(from_t, _id(object_id), to_t)
    after = int(request.args.get("after") or 0)
    limit = max(1, min(int(request.args.get("limit") or MAX_PAGE), MAX_PAGE))
    body: dict[str, Any] = {"results": everything[after : after + limit]}
    if after + limit < len(everything):
        body["paging"] = {"next": {"after": str(after + limit)}}
    return jsonify(body)


@bp.delete(_OBJ + "/<to_type>/<to_id>")
def archive(from_type: str, object_id: str, to_type: str, to_id: str) -> tuple[str, int]:
    from_t, to_t = _type(from_type), _type(to_type)
    current().portal.store.disassociate(from_t.name, _id(object_id), to_t.name, _id(to_id), actor())
    return "", 204


# ---- batch ------------------------------------------------------------
_BATCH = "/crm/v4/associations/<from_type>/<to_type>"


def _inputs(limit: int) -> list[Any]:
    inputs = (json_body({}) or {}).get("inputs")
    if not isinstance(inputs, list):
        raise validation("Some required fields were not set: [inputs]")
    if len(inputs) > limit:
        raise validation(
            f"The maximum number of inputs supported in a batch request is {limit}. "
            "Please reduce the number of items and try again"
        )
    return inputs


def _batch(results: list[Any], errors: list[Any], ok: int) -> tuple[Response, int]:
    body: dict[str, Any] = {"status": "COMPLETE", "results": results, **_window()}
    if errors:
        body.update({"numErrors": len(errors), "errors": errors})
    return jsonify(body), 207 if errors else ok


@bp.post(_BATCH + "/batch/read")
def batch_read(from_type: str, to_type: str) -> tuple[Response, int]:
    from_t, to_t = _type(from_type), _type(to_type)
    results, errors = [], []
    for item in _inputs(MAX_READ):
        fid = _id(item.get("id"))
        targets = _targets_json(from_t, fid, to_t)
        if targets:
            results.append({"from": {"id": str(fid)}, "to": targets})
        else:  # assumed from HubSpot's behaviour: objects without associations are reported as errors
            errors.append(
                standard_error(
                    f"No {to_t.singular} is associated with {from_t.singular} {fid}.",
                    "OBJECT_NOT_FOUND",
                    context={"fromObjectId": [str(fid)]},
                    sub_category="crm.associations.NO_ASSOCIATIONS_FOUND",
                )
            )
    return _batch(results, errors, 200)


@bp.post(_BATCH + "/batch/create")
def batch_create(from_type: str, to_type: str) -> tuple[Response, int]:
    from_t, to_t = _type(from_type), _type(to_type)
    results, errors = [], []
    for item in _inputs(MAX_WRITE):
        fid, tid = _id((item.get("from") or {}).get("id")), _id((item.get("to") or {}).get("id"))
        try:
            current().portal.store.associate(
                from_t.name, fid, to_t.name, tid, _type_ids(item.get("types")), actor()
            )
            results.append(_labels_pair(from_t, fid, to_t, tid))
        except HubSpotError as exc:
            errors.append(
                standard_error(
                    str(exc.body.get("message")),
                    str(exc.body.get("category")),
                    context={"fromObjectId": [str(fid)], "toObjectId": [str(tid)]},
                )
            )
    return _batch(results, errors, 201)


@bp.post(_BATCH + "/batch/associate/default")
def batch_associate_default(from_type: str, to_type: str) -> tuple[Response, int]:
    from_t, to_t = _type(from_type), _type(to_type)
    results, errors = [], []
    for item in _inputs(MAX_WRITE):
        fid, tid = _id((item.get("from") or {}).get("id")), _id((item.get("to") or {}).get("id"))
        try:
            type_id = current().portal.store.associate_default(from_t.name, fid, to_t.name, tid, actor())
            results.extend(_default_results(from_t, fid, to_t, tid, type_id))
        except HubSpotError as exc:
            errors.append(
                standard_error(
                    str(exc.body.get("message")),
                    str(exc.body.get("category")),
                    context={"fromObjectId": [str(fid)], "toObjectId": [str(tid)]},
                )
            )
    return _batch(results, errors, 200)


@bp.post(_BATCH + "/batch/archive")
def batch_archive(from_type: str, to_type: str) -> tuple[str, int]:
    from_t, to_t = _type(from_type), _type(to_type)
    for item in _inputs(MAX_WRITE):
        fid = _id((item.get("from") or {}).get("id"))
        for target in item.get("to") or []:
            current().portal.store.disassociate(from_t.name, fid, to_t.name, _id(target.get("id")), actor())
    return "", 204


@bp.post(_BATCH + "/batch/labels/archive")
def batch_archive_labels(from_type: str, to_type: str) -> tuple[str, int]:
    from_t, to_t = _type(from_type), _type(to_type)
    for item in _inputs(MAX_WRITE):
        fid, tid = _id((item.get("from") or {}).get("id")), _id((item.get("to") or {}).get("id"))
        current().portal.store.disassociate(
            from_t.name, fid, to_t.name, tid, actor(), _type_ids(item.get("types"))
        )
    return "", 204


@bp.get(_BATCH + "/labels")
def labels(from_type: str, to_type: str) -> Response:
    from_t, to_t = _type(from_type), _type(to_type)
    return jsonify(
        {
            "results": [
                {"category": "HUBSPOT_DEFINED", "typeId": t.type_id, "label": t.label}
                for t in assoc_types_between(from_t.name, to_t.name)
            ]
        }
    )
