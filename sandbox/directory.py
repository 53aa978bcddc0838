"""Owners and deal pipelines of the portal, and the owners/pipelines v3 endpoints that serve them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, request

from .ctx import current
from .errors import HubSpotError, error_body, validation
from .timeutil import iso_from_ms, now_ms

__all__ = ["Directory", "bp", "SEED_OWNERS", "DEAL_STAGES"]

# (id, firstName, lastName, vertical team or None) — brief: 101/102 marketplace, 201/202 retail,
# 301/302 wholesale, 900 the default owner.
SEED_OWNERS: tuple[tuple[int, str, str, str | None], ...] = (
    (101, "Maya", "Lindqvist", "marketplace"),
    (102, "Omar", "Haddad", "marketplace"),
    (201, "Priya", "Raman", "retail"),
    (202, "Lucas", "Moreau", "retail"),
    (301, "Hannah", "Okafor", "wholesale"),
    (302, "Diego", "Salazar", "wholesale"),
    (900, "Sam", "Default", None),
)
_TEAM_IDS = {"marketplace": "10", "retail": "20", "wholesale": "30"}
# (id, label, probability, closed)
DEAL_STAGES: tuple[tuple[str, str, str, bool], ...] = (
    ("appointmentscheduled", "Appointment Scheduled", "0.2", False),
    ("qualifiedtobuy", "Qualified To Buy", "0.4", False),
    ("presentationscheduled", "Presentation Scheduled", "0.6", False),
    ("decisionmakerboughtin", "Decision Maker Bought-In", "0.8", False),
    ("contractsent", "Contract Sent", "0.9", False),
    ("closedwon", "Closed Won", "1.0", True),
    ("closedlost", "Closed Lost", "0.0", True),
)


class Directory:
    """Seeded owners (PublicOwner JSON) and the default deal pipeline (Pipeline JSON). Read-only."""

    def __init__(self, clock: Callable[[], int] = now_ms) -> None:
        stamp = iso_from_ms(clock())
        self.owners: list[dict[str, Any]] = []
        for owner_id, first, last, team in SEED_OWNERS:
            owner: dict[str, Any] = {
                "id": str(owner_id),
                "email": f"{first}.{last}@sandbox-portal.example".lower(),
                "type": "PERSON",
                "firstName": first,
                "lastName": last,
                "userId": 1000 + owner_id,
                "userIdIncludingInactive": 1000 + owner_id,
                "createdAt": stamp,
                "updatedAt": stamp,
                "archived": False,
                "teams": [{"id": _TEAM_IDS[team], "name": team, "primary": True}] if team else [],
            }
            self.owners.append(owner)
        stages = [
            {
                "id": sid,
                "label": label,
                "displayOrder": i,
                "archived": False,
                "createdAt": stamp,
                "updatedAt": stamp,
                "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
                "metadata": {"isClosed": "true" if closed else "false", "probability": prob},
            }
            for i, (sid, label, prob, closed) in enumerate(DEAL_STAGES)
        ]
        self.pipelines: list[dict[str, Any]] = [
            {
                "id": "default",
                "label": "Sales Pipeline",
                "displayOrder": 0,
                "archived": False,
                "createdAt": stamp,
                "updatedAt": stamp,
                "stages": stages,
            }
        ]

    def owner_options(self) -> list[dict[str, Any]]:
        return [
            {
                "label": f"{o['firstName']} {o['lastName']}",
                "value": o["id"],
                "displayOrder": i,
                "hidden": False,
            }
            for i, o in enumerate(self.owners)
        ]

    def stage_options(self) -> list[dict[str, Any]]:
        return [
            {"label": s["label"], "value": s["id"], "displayOrder": s["displayOrder"], "hidden": False}
            for p in self.pipelines
            for s in p["stages"]
        ]

    def pipeline_options(self) -> list[dict[str, Any]]:
        return [
            {"label": p["label"], "value": p["id"], "displayOrder": p["displayOrder"], "hidden": False}
            for p in self.pipelines
        ]


bp = Blueprint("directory", __name__)


@bp.get("/crm/v3/owners/", strict_slashes=False)
def owners_page() -> Response:
    owners = current().portal.directory.owners
    email = request.args.get("email")
    if email:
        owners = [o for o in owners if o["email"] == email.lower()]
    after = int(request.args.get("after", "0") or 0)
    limit = min(int(request.args.get("limit", "100") or 100), 500)
    page = owners[after : after + limit]
    body: dict[str, Any] = {"results": page}
    if after + limit < len(owners):
        body["paging"] = {"next": {"after": str(after + limit), "link": f"?after={after + limit}"}}
    return jsonify(body)


@bp.get("/crm/v3/owners/<owner_id>")
def owner_by_id(owner_id: str) -> Response:
    key = "userId" if request.args.get("idProperty") == "userId" else "id"
    for owner in current().portal.directory.owners:
        if str(owner[key]) == owner_id:
            return jsonify(owner)
    raise HubSpotError(404, error_body(f"No owner found with {key} {owner_id}", "OBJECT_NOT_FOUND"))


def _deals_only(object_type: str) -> None:
    if object_type not in ("deals", "deal", "0-3"):
        raise validation(f"Unable to infer object type from: {object_type}")


@bp.get("/crm/v3/pipelines/<object_type>")
def pipelines(object_type: str) -> Response:
    _deals_only(object_type)
    return jsonify({"results": current().portal.directory.pipelines})


@bp.get("/crm/v3/pipelines/<object_type>/<pipeline_id>")
def pipeline(object_type: str, pipeline_id: str) -> Response:
    _deals_only(object_type)
    for found in current().portal.directory.pipelines:
        if found["id"] == pipeline_id:
            return jsonify(found)
    raise HubSpotError(404, error_body(f"Pipeline {pipeline_id} not found.", "OBJECT_NOT_FOUND"))


@bp.get("/crm/v3/pipelines/<object_type>/<pipeline_id>/stages")
def pipeline_stages(object_type: str, pipeline_id: str) -> Response:
    found = pipeline(object_type, pipeline_id).get_json()
    return jsonify({"results": found["stages"]})
