"""Evaluation of HubSpot search requests (filterGroups OR-ed, filters AND-ed, free-text `query`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol


class _Searchable(Protocol):
    properties: dict[str, str | None]


def _as_number(value: str) -> float | None:
    """Numbers, epoch-millisecond dates and ISO dates all compare as numbers (ms for dates)."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() * 1000


def _compare(actual: str, expected: Any) -> int | None:
    left, right = _as_number(actual), _as_number(str(expected))
    if left is not None and right is not None:
        return (left > right) - (left < right)
    a, b = actual.lower(), str(expected).lower()
    return (a > b) - (a < b)


def _filter(record: _Searchable, flt: dict[str, Any]) -> bool:
    name, op = flt.get("propertyName", ""), flt.get("operator", "EQ")
    actual = record.properties.get(name)
    if op == "HAS_PROPERTY":
        return actual not in (None, "")
    if op == "NOT_HAS_PROPERTY":
        return actual in (None, "")
    if actual is None:
        return op in ("NEQ", "NOT_IN")
    if op in ("IN", "NOT_IN"):
        found = actual.lower() in {str(v).lower() for v in flt.get("values", [])}
        return bool(found == (op == "IN"))
    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        token = str(flt.get("value", "")).lower()
        # A leading/trailing * is HubSpot's wildcard; without it the token must match a whole word.
        if token.startswith("*") or token.endswith("*"):
            hit = token.strip("*") in actual.lower()
        else:
            hit = token in actual.lower().split()
        return bool(hit == (op == "CONTAINS_TOKEN"))
    if op == "BETWEEN":
        low, high = _compare(actual, flt.get("value")), _compare(actual, flt.get("highValue"))
        return low is not None and high is not None and low >= 0 and high <= 0
    outcome = _compare(actual, flt.get("value"))
    checks: dict[str, Callable[[int], bool]] = {
        "EQ": lambda c: c == 0,
        "NEQ": lambda c: c != 0,
        "LT": lambda c: c < 0,
        "LTE": lambda c: c <= 0,
        "GT": lambda c: c > 0,
        "GTE": lambda c: c >= 0,
    }
    return outcome is not None and op in checks and checks[op](outcome)


def matches(record: _Searchable, body: dict[str, Any], query_properties: list[str]) -> bool:
    groups = body.get("filterGroups") or []
    if groups and not any(all(_filter(record, f) for f in g.get("filters", [])) for g in groups):
        return False
    query = str(body.get("query") or "").strip().lower()
    if query:
        haystack = " ".join(str(record.properties.get(p) or "") for p in query_properties).lower()
        return all(word in haystack for word in query.split())
    return True


def sort_key(sort: dict[str, Any] | str) -> Callable[[_Searchable], tuple[int, float, str]]:
    name = sort if isinstance(sort, str) else str(sort.get("propertyName", ""))

    def key(record: _Searchable) -> tuple[int, float, str]:
        value = record.properties.get(name) or ""
        number = _as_number(value) if value else None
        return (0, number, "") if number is not None else (1, 0.0, value.lower())

    return key
