"""CRM search semantics (POST /crm/v3/objects/{type}/search), as pure functions over records.

Limits and operators follow hubspot-facts.md §3 [SEARCH]: ≤5 filterGroups, ≤6 filters per group,
≤18 filters, limit ≤200, and no paging past 10,000 results.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import validation
from .model import Record
from .timeutil import to_ms

__all__ = ["SearchRequest", "parse_search", "run_search", "MAX_RESULTS"]

MAX_RESULTS = 10_000
MAX_LIMIT = 200
OPERATORS = {
    "EQ",
    "NEQ",
    "LT",
    "LTE",
    "GT",
    "GTE",
    "BETWEEN",
    "IN",
    "NOT_IN",
    "HAS_PROPERTY",
    "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN",
    "NOT_CONTAINS_TOKEN",
}
_QUERY_PROPS = {
    "contacts": ("email", "firstname", "lastname", "phone", "company"),
    "companies": ("name", "domain", "website", "phone"),
    "deals": ("dealname",),
    "tasks": ("hs_task_subject", "hs_task_body"),
    "notes": ("hs_note_body",),
}
KindOf = Callable[[str], str]


class SearchRequest:
    """A validated search body."""

    def __init__(
        self,
        groups: list[list[dict[str, Any]]],
        sorts: list[tuple[str, bool]],
        query: str,
        properties: list[str],
        limit: int,
        after: int,
    ) -> None:
        self.groups, self.sorts, self.query = groups, sorts, query
        self.properties, self.limit, self.after = properties, limit, after


def parse_search(body: Mapping[str, Any], known: set[str]) -> SearchRequest:
    """Validate a search body against HubSpot's limits; raises HubSpotError(400)."""
    groups_raw = body.get("filterGroups") or []
    if len(groups_raw) > 5:
        raise validation("Too many filter groups: the maximum is 5.")
    groups = [list(g.get("filters") or []) for g in groups_raw]
    if any(len(g) > 6 for g in groups) or sum(len(g) for g in groups) > 18:
        raise validation("Too many filters: at most 6 per filter group and 18 in total.")
    for group in groups:
        for flt in group:
            operator = flt.get("operator") or "EQ"
            if operator not in OPERATORS:
                raise validation(
                    f"Invalid filter operator {operator!r}; expected one of {sorted(OPERATORS)}."
                )
            if flt.get("propertyName") not in known:
                raise validation(
                    f"There was a problem with the request: property {flt.get('propertyName')!r} "
                    "does not exist."
                )
    limit = int(body.get("limit") or 10)
    if limit < 1 or limit > MAX_LIMIT:
        raise validation(f"limit must be between 1 and {MAX_LIMIT}; got {limit}.")
    after_raw = str(body.get("after") or "0")
    if not after_raw.isdigit():
        raise validation(f"Invalid after value {after_raw!r}.")
    after = int(after_raw)
    if after >= MAX_RESULTS:
        raise validation(
            f"Paging beyond {MAX_RESULTS} results is not supported: the search endpoints return "
            f"at most {MAX_RESULTS} results for a query (after={after})."
        )
    return SearchRequest(
        groups,
        _parse_sorts(body.get("sorts") or []),
        str(body.get("query") or ""),
        list(body.get("properties") or []),
        limit,
        after,
    )


def _parse_sorts(raw: Sequence[Any]) -> list[tuple[str, bool]]:
    """Accept "prop", "-prop" and {"propertyName", "direction": ASCENDING|DESCENDING}."""
    sorts = []
    for item in raw:
        if isinstance(item, Mapping):
            sorts.append(
                (str(item.get("propertyName")), str(item.get("direction", "ASCENDING")) == "DESCENDING")
            )
        elif isinstance(item, str) and item:
            sorts.append((item.lstrip("-"), item.startswith("-")))
    return sorts


def run_search(
    records: list[Record], req: SearchRequest, object_type: str, kind_of: KindOf
) -> tuple[list[Record], int, int | None]:
    """Filter, sort and page; returns (page, total, next `after` or None)."""
    matched = [r for r in records if _matches(r, req, object_type, kind_of)]
    for name, descending in reversed(req.sorts):
        present = [r for r in matched if r.properties.get(name, "") != ""]
        absent = [r for r in matched if r.properties.get(name, "") == ""]
        kind = kind_of(name)
        present.sort(key=lambda r: _sort_key(r.properties[name], kind), reverse=descending)  # noqa: B023
        matched = present + absent  # records without the property come last either way
    total = len(matched)
    end = min(req.after + req.limit, MAX_RESULTS, total)
    page = matched[req.after : end]
    next_after = end if end < min(total, MAX_RESULTS) else None
    return page, total, next_after


def _matches(rec: Record, req: SearchRequest, object_type: str, kind_of: KindOf) -> bool:
    if req.query and not _query_hit(rec, req.query, object_type):
        return False
    if not req.groups:
        return True
    return any(all(_filter_hit(rec, f, kind_of) for f in group) for group in req.groups)


def _query_hit(rec: Record, query: str, object_type: str) -> bool:
    needle = query.lower().strip("*")
    return any(needle in rec.properties.get(p, "").lower() for p in _QUERY_PROPS.get(object_type, ()))


def _sort_key(value: str, kind: str) -> Any:
    if kind == "number":
        try:
            return (0, float(value))
        except ValueError:
            return (1, value)
    if kind == "datetime":
        return (0, to_ms(value) or 0)
    return (0, value.lower())


def _coerce(value: Any, kind: str) -> Any:
    """A comparable form of a stored or filter value; None when it cannot be compared as `kind`."""
    text = str(value).strip()
    if kind == "number":
        try:
            return float(text)
        except ValueError:
            return None
    if kind == "datetime":
        return to_ms(text)
    return text.lower()


def _filter_hit(rec: Record, flt: Mapping[str, Any], kind_of: KindOf) -> bool:
    name, operator = str(flt.get("propertyName")), str(flt.get("operator") or "EQ")
    stored = rec.properties.get(name, "")
    has = stored != ""
    if operator == "HAS_PROPERTY":
        return has
    if operator == "NOT_HAS_PROPERTY":
        return not has
    kind = kind_of(name)
    if operator in ("IN", "NOT_IN"):
        wanted = {_coerce(v, kind) for v in (flt.get("values") or [])}
        hit = has and _coerce(stored, kind) in wanted
        return hit if operator == "IN" else not hit
    if operator in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        pattern = str(flt.get("value", "")).lower()
        tokens = [stored.lower(), *stored.lower().replace("@", " ").replace(".", " ").split()]
        hit = has and any(
            fnmatch.fnmatchcase(t, pattern if "*" in pattern else f"*{pattern}*") for t in tokens
        )
        return hit if operator == "CONTAINS_TOKEN" else not hit
    mine, theirs = _coerce(stored, kind), _coerce(flt.get("value", ""), kind)
    if operator == "NEQ":
        return not has or mine != theirs  # assumed: records without a value are "not equal"
    if not has or mine is None or theirs is None:
        return False
    if operator == "EQ":
        return bool(mine == theirs)
    if operator == "BETWEEN":
        high = _coerce(flt.get("highValue", ""), kind)
        return high is not None and theirs <= mine <= high
    return bool(
        {"LT": mine < theirs, "LTE": mine <= theirs, "GT": mine > theirs, "GTE": mine >= theirs}[operator]
    )
