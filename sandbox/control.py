"""/_sandbox/* control endpoints for tests, the demo and load/fault tools. No auth, not rate limited,
not counted in stats. Keep the shapes stable: other tools script against them."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from .ctx import current, json_body
from .email_events import ingest
from .errors import not_found, unknown_object_type, validation
from .model import Actor
from .objecttypes import resolve_type
from .serialize import history_json, object_json

__all__ = ["bp"]

bp = Blueprint("control", __name__, url_prefix="/_sandbox")


@bp.get("/health")
def health() -> Response:
    return jsonify({"status": "ok", "portalId": current().config.portal_id})


@bp.post("/faults")
def set_faults() -> Response:
    body = json_body({}) or {}
    rules = body.get("rules")
    if not isinstance(rules, list):
        raise validation('Expected {"rules": [...]}')
    current().faults.set_rules(rules)
    return jsonify({"rules": current().faults.rules()})


@bp.get("/faults")
def get_faults() -> Response:
    return jsonify({"rules": current().faults.rules()})


@bp.delete("/faults")
def clear_faults() -> Response:
    current().faults.clear()
    return jsonify({"rules": []})


@bp.get("/stats")
def stats() -> Response:
    sandbox = current()
    return jsonify(sandbox.stats.snapshot(sandbox.dispatcher.stats()))


@bp.post("/reset")
def reset() -> Response:
    current().reset()
    return jsonify({"status": "reset", "seed": current().config.seed})


@bp.get("/webhooks/log")
def webhook_log() -> Response:
    return jsonify({"results": current().dispatcher.log()})


@bp.post("/webhooks/pause")
def pause() -> Response:
    current().dispatcher.pause()
    return jsonify({"paused": True})


@bp.post("/webhooks/resume")
def resume() -> Response:
    current().dispatcher.resume()
    return jsonify({"paused": False})


@bp.post("/webhooks/flush")
def flush() -> Response:
    timeout = min(float(request.args.get("timeout", "10")), 60.0)
    done = current().dispatcher.flush(timeout)
    return jsonify({"flushed": done, "pending": current().dispatcher.pending()})


@bp.post("/email-events")
def email_events() -> tuple[Response, int]:
    body = json_body(None)
    items = body if isinstance(body, list) else [body]
    if not items or not all(isinstance(i, dict) for i in items):
        raise validation("Expected one email event object or an array of them.")
    return jsonify({"results": [ingest(item) for item in items]}), 201


def _dump_one(object_type: str, record_id: int) -> dict[str, Any]:
    portal = current().portal
    rec = portal.store.get(object_type, record_id)
    if rec is None:
        raise not_found(str(record_id))
    body = object_json(rec, portal.schema.names(object_type), sorted(rec.properties))
    body["propertiesWithHistory"] = {
        k: [history_json(e) for e in reversed(v)] for k, v in rec.history.items()
    }
    body["associations"] = {
        t: {str(i): sorted(types) for i, types in portal.store.associations(object_type, rec.id, t).items()}
        for t in ("contacts", "companies", "deals", "tasks", "notes")
    }
    return body


@bp.get("/objects/<object_type>")
def dump(object_type: str) -> Response:
    found = resolve_type(object_type)
    if found is None:
        raise unknown_object_type(object_type)
    portal = current().portal
    records = portal.store.scan(found.name)
    known = portal.schema.names(found.name)
    return jsonify(
        {"total": len(records), "results": [object_json(r, known, sorted(r.properties)) for r in records]}
    )


@bp.get("/objects/<object_type>/<int:object_id>")
def dump_one(object_type: str, object_id: int) -> Response:
    found = resolve_type(object_type)
    if found is None:
        raise unknown_object_type(object_type)
    return jsonify(_dump_one(found.name, object_id))


@bp.post("/objects/<object_type>/batch/update")
def set_many_as(object_type: str) -> Response:
    """Change many objects' properties as one change source, in one call; fires the same webhooks.

    Body: `{"sourceType", "sourceId"?, "userId"?, "inputs": [{"id", "properties"}]}`. A load tool
    can then make a burst of changes by many people or systems (e.g. a bulk import, a workflow
    setting a score on thousands of contacts) as fast as HubSpot records them, instead of one
    request per object. Ids that do not exist are listed in `missing`; invalid values are a 400
    for all, before anything changes (like the CRM batch update).
    """
    found = resolve_type(object_type)
    if found is None:
        raise unknown_object_type(object_type)
    body = json_body({}) or {}
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(i, dict) and i.get("id") for i in inputs):
        raise validation('Expected {"inputs": [{"id": ..., "properties": {...}}, ...]}')
    source = Actor(str(body.get("sourceType") or "CRM_UI"), body.get("sourceId"), body.get("userId"))
    updated, missing = current().portal.store.update_many(
        found.name, [(str(i["id"]), i.get("properties") or {}) for i in inputs], source, allow_read_only=True
    )
    return jsonify({"results": [str(r.id) for r in updated], "missing": missing})


@bp.patch("/objects/<object_type>/<int:object_id>")
def set_as(object_type: str, object_id: int) -> Response:
    """Change properties as any source (e.g. SEQUENCES), read-only ones included; fires webhooks."""
    found = resolve_type(object_type)
    if found is None:
        raise unknown_object_type(object_type)
    body = json_body({}) or {}
    source = Actor(str(body.get("sourceType") or "CRM_UI"), body.get("sourceId"), body.get("userId"))
    current().portal.store.update(
        found.name, object_id, body.get("properties") or {}, source, allow_read_only=True
    )
    return jsonify(_dump_one(found.name, object_id))
