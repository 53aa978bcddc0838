"""CRM objects v3: /crm/v3/objects/{objectType}[/...] for contacts, companies, deals, tasks and notes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flask import Blueprint, Response, jsonify, request

from .ctx import actor, current, json_body
from .errors import not_found, standard_error, unknown_object_type, validation
from .model import Record
from .objecttypes import ObjectType, resolve_type
from .search import parse_search, run_search
from .serialize import association_type_name, object_json, split_param
from .store import AssocInput
from .timeutil import iso_from_ms, now_ms

__all__ = ["bp", "parse_assoc_inputs"]

bp = Blueprint("crm", __name__, url_prefix="/crm/v3/objects/<object_type>")
MAX_BATCH = 100
MAX_HISTORY_BATCH = 50


def _type(name: str) -> ObjectType:
    found = resolve_type(name)
    if found is None:
        raise unknown_object_type(name)
    return found


def _known(ot: ObjectType) -> set[str]:
    return current().portal.schema.names(ot.name)


def _list_arg(name: str) -> list[str]:
    return split_param(request.args.getlist(name))


def _flag(name: str) -> bool:
    return request.args.get(name, "false").lower() == "true"


def _window() -> dict[str, str]:
    stamp = iso_from_ms(now_ms())
    return {"startedAt": stamp, "completedAt": stamp}


def _inputs(body: Any, limit: int = MAX_BATCH) -> list[Any]:
    inputs = (body or {}).get("inputs")
    if not isinstance(inputs, list):
        raise validation("Some required fields were not set: [inputs]")
    if len(inputs) > limit:
        raise validation(
            f"The maximum number of inputs supported in a batch request is {limit}. "
            "Please reduce the number of items and try again"
        )
    return inputs


def _properties(body: Any) -> Mapping[str, Any]:
    props = (body or {}).get("properties")
    if props is None:
        return {}
    if not isinstance(props, Mapping):
        raise validation("properties must be an object mapping property names to values")
    return props


def parse_assoc_inputs(raw: Sequence[Any] | None) -> list[AssocInput]:
    """[{to:{id}, types:[{associationCategory, associationTypeId}]}] → [(to_id, type_id)]."""
    pairs: list[AssocInput] = []
    for item in raw or []:
        to_id = str(((item or {}).get("to") or {}).get("id", ""))
        if not to_id.isdigit():
            raise validation(f"Invalid association target id {to_id!r}.")
        for spec in item.get("types") or []:
            pairs.append((int(to_id), int(spec.get("associationTypeId", 0))))
    return pairs


def _missing_error(ot: ObjectType, ids: list[str]) -> dict[str, Any]:
    return standard_error(
        f"Could not get some {ot.upper} objects, they may be deleted or not exist. Check that ids are valid.",
        "OBJECT_NOT_FOUND",
        context={"ids": ids},
    )


def _batch(
    results: list[dict[str, Any]], errors: list[dict[str, Any]], ok_status: int
) -> tuple[Response, int]:
    body: dict[str, Any] = {"status": "COMPLETE", "results": results, **_window()}
    if errors:
        body.update({"numErrors": len(errors), "errors": errors})
    return jsonify(body), 207 if errors else ok_status


def _assoc_json(ot: ObjectType, rec: Record, to_types: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for raw in to_types:
        to = resolve_type(raw)
        if to is None:
            continue
        targets = current().portal.store.associations(ot.name, rec.id, to.name)
        results = [
            {"id": str(to_id), "type": association_type_name(ot.name, type_id)}
            for to_id, types in targets.items()
            for type_id in sorted(types)
        ]
        if results:
            out[raw] = {"results": results}
    return out


def _write_result(
    rec: Record, ot: ObjectType, names: Sequence[str], trace: str | None = None
) -> dict[str, Any]:
    body = object_json(rec, _known(ot), [*ot.default_properties, *names])
    if trace:
        body["objectWriteTraceId"] = trace
    return body


# ---- basic ------------------------------------------------------------
@bp.get("")
def get_page(object_type: str) -> Response:
    ot = _type(object_type)
    history = _list_arg("propertiesWithHistory")
    cap = MAX_HISTORY_BATCH if history else 100
    limit = max(1, min(int(request.args.get("limit") or 10), cap))
    after_raw = request.args.get("after")
    if after_raw and not after_raw.isdigit():
        raise validation(f"Invalid after value {after_raw!r}.")
    page, next_id = current().portal.store.page(
        ot.name, int(after_raw) if after_raw else None, limit, archived=_flag("archived")
    )
    assoc = _list_arg("associations")
    results = []
    for rec in page:
        item = object_json(rec, _known(ot), _list_arg("properties") or None, history or None)
        if assoc:
            item["associations"] = _assoc_json(ot, rec, assoc)
        results.append(item)
    body: dict[str, Any] = {"results": results}
    if next_id is not None:
        body["paging"] = {
            "next": {
                "after": str(next_id),
                "link": f"{request.host_url}crm/v3/objects/{object_type}?after={next_id}",
            }
        }
    return jsonify(body)


@bp.post("")
def create(object_type: str) -> tuple[Response, int]:
    ot = _type(object_type)
    body = json_body({})
    props = _properties(body)
    rec = current().portal.store.create(
        ot.name, props, actor(), associations=parse_assoc_inputs(body.get("associations"))
    )
    return jsonify(_write_result(rec, ot, list(props))), 201


@bp.get("/<object_id>")
def get_by_id(object_type: str, object_id: str) -> Response:
    ot = _type(object_type)
    rec = current().portal.store.get(
        ot.name, object_id, id_property=request.args.get("idProperty"), archived=_flag("archived")
    )
    if rec is None:
        raise not_found(object_id)
    body = object_json(
        rec, _known(ot), _list_arg("properties") or None, _list_arg("propertiesWithHistory") or None
    )
    assoc = _list_arg("associations")
    if assoc:
        body["associations"] = _assoc_json(ot, rec, assoc)
    return jsonify(body)


@bp.patch("/<object_id>")
def update(object_type: str, object_id: str) -> Response:
    ot = _type(object_type)
    props = _properties(json_body({}))
    rec = current().portal.store.update(
        ot.name, object_id, props, actor(), id_property=request.args.get("idProperty")
    )
    return jsonify(_write_result(rec, ot, list(props)))


@bp.delete("/<object_id>")
def archive(object_type: str, object_id: str) -> tuple[str, int]:
    ot = _type(object_type)
    current().portal.store.archive(ot.name, object_id, actor())
    return "", 204  # HubSpot answers 204 for unknown ids too


# ---- batch ------------------------------------------------------------
@bp.post("/batch/read")
def batch_read(object_type: str) -> tuple[Response, int]:
    ot = _type(object_type)
    body = json_body({}) or {}
    history = list(body.get("propertiesWithHistory") or [])
    if history and len(body.get("inputs") or []) > MAX_HISTORY_BATCH:
        raise validation(
            "The maximum number of inputs supported in a batch request for property histories is 50. "
            "Please reduce the number of items and try again"
        )
    inputs = _inputs(body)
    store, known = current().portal.store, _known(ot)
    results, missing = [], []
    for item in inputs:
        rec = store.get(
            ot.name, str(item.get("id", "")), id_property=body.get("idProperty"), archived=_flag("archived")
        )
        if rec is None:
            missing.append(str(item.get("id", "")))
        else:
            results.append(
                object_json(rec, known, list(body.get("properties") or []) or None, history or None)
            )
    return _batch(results, [_missing_error(ot, missing)] if missing else [], 200)


@bp.post("/batch/create")
def batch_create(object_type: str) -> tuple[Response, int]:
    ot = _type(object_type)
    inputs = _inputs(json_body({}))
    pairs = [(_properties(i), parse_assoc_inputs(i.get("associations"))) for i in inputs]
    records = current().portal.store.create_many(ot.name, pairs, actor())
    results = [
        _write_result(rec, ot, list(props), i.get("objectWriteTraceId"))
        for rec, (props, _), i in zip(records, pairs, inputs, strict=True)
    ]
    return _batch(results, [], 201)


@bp.post("/batch/update")
def batch_update(object_type: str) -> tuple[Response, int]:
    ot = _type(object_type)
    inputs = _inputs(json_body({}))
    id_props = {i.get("idProperty") for i in inputs} - {None}
    id_property = id_props.pop() if len(id_props) == 1 else None
    records, missing = current().portal.store.update_many(
        ot.name, [(str(i.get("id", "")), _properties(i)) for i in inputs], actor(), id_property=id_property
    )
    by_id = {str(i.get("id")): i for i in inputs}
    traces = [by_id.get(str(r.id), by_id.get(r.properties.get(id_property or "", ""), {})) for r in records]
    results = [
        _write_result(r, ot, list(_properties(t)), t.get("objectWriteTraceId"))
        for r, t in zip(records, traces, strict=True)
    ]
    return _batch(results, [_missing_error(ot, missing)] if missing else [], 200)


@bp.post("/batch/upsert")
def batch_upsert(object_type: str) -> tuple[Response, int]:
    ot = _type(object_type)
    inputs = _inputs(json_body({}))
    triples = [(str(i.get("id", "")), i.get("idProperty"), _properties(i)) for i in inputs]
    done, missing = current().portal.store.upsert_many(ot.name, triples, actor())
    results = []
    for (rec, new), (_, _, props) in zip(
        done, [t for t in triples if str(t[0]) not in missing], strict=False
    ):
        item = _write_result(rec, ot, list(props))
        item["new"] = new
        results.append(item)
    return _batch(results, [_missing_error(ot, missing)] if missing else [], 200)


@bp.post("/batch/archive")
def batch_archive(object_type: str) -> tuple[str, int]:
    ot = _type(object_type)
    for item in _inputs(json_body({})):
        current().portal.store.archive(ot.name, str(item.get("id", "")), actor())
    return "", 204


# ---- search, merge, gdpr ------------------------------------------------------------
@bp.post("/search")
def search(object_type: str) -> Response:
    ot = _type(object_type)
    portal = current().portal
    known = _known(ot)
    req = parse_search(json_body({}) or {}, known)
    page, total, next_after = run_search(
        portal.store.scan(ot.name), req, ot.name, lambda name: portal.schema.value_kind(ot.name, name)
    )
    body: dict[str, Any] = {
        "total": total,
        "results": [object_json(r, known, req.properties or None) for r in page],
    }
    if next_after is not None:
        body["paging"] = {"next": {"after": str(next_after)}}
    return jsonify(body)


@bp.post("/merge")
def merge(object_type: str) -> Response:
    ot = _type(object_type)
    body = json_body({}) or {}
    primary, secondary = str(body.get("primaryObjectId") or ""), str(body.get("objectIdToMerge") or "")
    if not primary or not secondary:
        raise validation("Some required fields were not set: [primaryObjectId, objectIdToMerge]")
    rec = current().portal.store.merge(ot.name, primary, secondary, actor())
    return jsonify(object_json(rec, _known(ot)))


@bp.post("/gdpr-delete")
def gdpr_delete(object_type: str) -> tuple[str, int]:
    ot = _type(object_type)
    body = json_body({}) or {}
    object_id = str(body.get("objectId") or "")
    if not current().portal.store.purge(ot.name, object_id, actor(), body.get("idProperty")):
        raise not_found(object_id)
    return "", 204
