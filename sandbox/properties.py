"""Properties v3: property definitions and groups per object type (/crm/v3/properties/{objectType})."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from .ctx import current, json_body
from .errors import HubSpotError, error_body, standard_error, unknown_object_type, validation
from .objecttypes import resolve_type
from .timeutil import iso_from_ms, now_ms

__all__ = ["bp"]

bp = Blueprint("properties", __name__, url_prefix="/crm/v3/properties/<object_type>")


def _type(name: str) -> str:
    found = resolve_type(name)
    if found is None:
        raise unknown_object_type(name)
    return found.name


def _missing(what: str, name: str) -> HubSpotError:
    return HubSpotError(
        404, error_body(f"{what} {name} does not exist", "OBJECT_NOT_FOUND", context={"name": [name]})
    )


def _window() -> dict[str, str]:
    stamp = iso_from_ms(now_ms())
    return {"startedAt": stamp, "completedAt": stamp}


@bp.get("")
def get_all(object_type: str) -> Response:
    return jsonify({"results": current().portal.schema.all(_type(object_type))})


@bp.post("")
def create(object_type: str) -> tuple[Response, int]:
    return jsonify(current().portal.schema.create(_type(object_type), json_body({}) or {})), 201


@bp.get("/<name>")
def get_by_name(object_type: str, name: str) -> Response:
    prop = current().portal.schema.get(_type(object_type), name)
    if prop is None:
        raise _missing("Property", name)
    return jsonify(prop)


@bp.patch("/<name>")
def update(object_type: str, name: str) -> Response:
    prop = current().portal.schema.update(_type(object_type), name, json_body({}) or {})
    if prop is None:
        raise _missing("Property", name)
    return jsonify(prop)


@bp.delete("/<name>")
def archive(object_type: str, name: str) -> tuple[str, int]:
    current().portal.schema.archive(_type(object_type), name)
    return "", 204


def _batch_inputs() -> list[Any]:
    inputs = (json_body({}) or {}).get("inputs")
    if not isinstance(inputs, list):
        raise validation("Some required fields were not set: [inputs]")
    return inputs


def _batch(results: list[Any], errors: list[Any], ok: int) -> tuple[Response, int]:
    body: dict[str, Any] = {"status": "COMPLETE", "results": results, **_window()}
    if errors:
        body.update({"numErrors": len(errors), "errors": errors})
    return jsonify(body), 207 if errors else ok


@bp.post("/batch/read")
def batch_read(object_type: str) -> tuple[Response, int]:
    schema, ot = current().portal.schema, _type(object_type)
    results, missing = [], []
    for item in _batch_inputs():
        prop = schema.get(ot, str(item.get("name")))
        if prop is None:
            missing.append(str(item.get("name")))
        else:
            results.append(prop)
    errors = [
        standard_error(f"Property {n} does not exist", "OBJECT_NOT_FOUND", context={"name": [n]})
        for n in missing
    ]
    return _batch(results, errors, 200)


@bp.post("/batch/create")
def batch_create(object_type: str) -> tuple[Response, int]:
    schema, ot = current().portal.schema, _type(object_type)
    results, errors = [], []
    for item in _batch_inputs():
        try:
            results.append(schema.create(ot, item))
        except HubSpotError as exc:
            errors.append(
                standard_error(
                    str(exc.body.get("message")),
                    str(exc.body.get("category")),
                    context={"name": [str(item.get("name"))]},
                )
            )
    return _batch(results, errors, 201)


@bp.post("/batch/archive")
def batch_archive(object_type: str) -> tuple[str, int]:
    schema, ot = current().portal.schema, _type(object_type)
    for item in _batch_inputs():
        schema.archive(ot, str(item.get("name")))
    return "", 204


# ---- groups ------------------------------------------------------------
@bp.get("/groups")
def groups(object_type: str) -> Response:
    return jsonify({"results": current().portal.schema.groups(_type(object_type))})


@bp.post("/groups")
def create_group(object_type: str) -> tuple[Response, int]:
    return jsonify(current().portal.schema.create_group(_type(object_type), json_body({}) or {})), 201


@bp.get("/groups/<name>")
def get_group(object_type: str, name: str) -> Response:
    group = current().portal.schema.get_group(_type(object_type), name)
    if group is None:
        raise _missing("Property group", name)
    return jsonify(group)


@bp.patch("/groups/<name>")
def update_group(object_type: str, name: str) -> Response:
    group = current().portal.schema.update_group(_type(object_type), name, json_body({}) or {})
    if group is None:
        raise _missing("Property group", name)
    return jsonify(group)


@bp.delete("/groups/<name>")
def archive_group(object_type: str, name: str) -> tuple[str, int]:
    current().portal.schema.archive_group(_type(object_type), name)
    return "", 204
