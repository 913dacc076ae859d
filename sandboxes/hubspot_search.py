"""Evaluation of HubSpot search requests (filterGroups OR-ed, filters AND-ed, free-text `query`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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


# Search request caps since 2024-08-26 (developers.hubspot.com/changelog/breaking-change-expanded-filtering-
# capabilities-and-error-messaging-in-hubspots-search-api): 5 filter groups, 10 filters per group, 25 in all.
MAX_FILTER_GROUPS, MAX_FILTERS_PER_GROUP, MAX_FILTERS = 5, 10, 25


def filter_problem(body: dict[str, Any]) -> str | None:
    """Why HubSpot would refuse this search's filters (400 VALIDATION_ERROR), or None.

    The limits are documented; the exact wording of HubSpot's messages is not (ours name the limit).
    """
    groups = body.get("filterGroups") or []
    if len(groups) > MAX_FILTER_GROUPS:
        return f"Too many filter groups ({len(groups)}); the maximum is {MAX_FILTER_GROUPS}."
    counts = [len(group.get("filters") or []) for group in groups]
    if any(count > MAX_FILTERS_PER_GROUP for count in counts):
        return f"Too many filters in a filter group ({max(counts)}); the maximum is {MAX_FILTERS_PER_GROUP}."
    if sum(counts) > MAX_FILTERS:
        return f"Too many filters ({sum(counts)}); the maximum is {MAX_FILTERS} across all filter groups."
    return None


@dataclass
class _View:
    properties: dict[str, str | None]


@dataclass
class SearchIndex:
    """HubSpot's search index lags writes by a few seconds: a record created or updated through the API is found
    by search (and list-by-search) only `lag_seconds` later, meanwhile as it was before the write (a new record:
    not at all). Reads by id are consistent at once. Records seeded straight into the state (test setup) are
    indexed at once, as if written long ago. `lag_seconds = 0` turns the lag off for tests that don't care.
    """

    lag_seconds: float
    clock: Callable[[], float]
    _stale: dict[tuple[str, str], tuple[float, dict[str, str | None] | None]] = field(default_factory=dict)

    def written(self, object_type: str, record_id: str, before: dict[str, str | None] | None) -> None:
        """An API write of a record whose indexed properties were `before` (None: a new record)."""
        if self.lag_seconds <= 0:
            return
        now, key = self.clock(), (object_type, record_id)
        pending = self._stale.get(key)
        still_old = pending[1] if pending is not None and pending[0] > now else before
        self._stale[key] = (now + self.lag_seconds, still_old)

    def view(self, object_type: str, record: _Searchable, record_id: str) -> _Searchable | None:
        """What search sees of the record now (None: not in the index yet)."""
        pending = self._stale.get((object_type, record_id))
        if pending is None:
            return record
        if self.clock() >= pending[0]:
            del self._stale[(object_type, record_id)]
            return record
        return _View(pending[1]) if pending[1] is not None else None


@dataclass
class SecondlyLimit:
    """The search endpoints' own limit, per account, counted apart from the 10-second burst limit.

    Documented as four requests per second per token (changelog crm-search-api-rate-limit-increase; the 2022
    usage-details page quoted in HubSpot/hubspot-api-nodejs#256); current pages may say five (unverified).
    """

    per_second: int | None
    clock: Callable[[], float]
    _calls: list[float] = field(default_factory=list)

    def take(self) -> bool:
        if self.per_second is None:
            return True
        now = self.clock()
        self._calls = [t for t in self._calls if now - t < 1.0]
        if len(self._calls) >= self.per_second:
            return False
        self._calls.append(now)
        return True
