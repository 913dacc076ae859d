"""Value coercion for the mapping engine (drivers/mapping.py): a canonical value as the provider field holds it,
by the field's introspected type (numbers, booleans, dates, date-times, picklists, multi-selects).

`coerce` raises `Refused` (with a code and, for picklists, the allowed values) when the field cannot hold the
value; messages never contain the value itself.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from drivers.models import FieldInfo

NUMBER = {"number", "double", "currency", "percent", "int", "integer", "decimal", "bigint", "long"}
BOOLEAN = {"bool", "boolean", "booleancheckbox"}
DATE = {"date"}
DATETIME = {"datetime", "date_time"}
PICKLIST = {"picklist", "enumeration", "enum", "select"}
MULTI = {"multipicklist", "multiselectpicklist", "multi_select", "multiselect", "checkbox_enumeration"}


class Refused(ValueError):
    """The field cannot hold the value: `code` is type | picklist; `allowed` the picklist's values."""

    def __init__(self, code: str, message: str, allowed: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.code, self.allowed = code, allowed


def text(value: Any) -> str:
    """A value as free text (the overflow field's `name: value` lines)."""
    if isinstance(value, (list, tuple)):
        return ", ".join(text(v) for v in value)
    return value.isoformat() if isinstance(value, (date, datetime)) else str(value)


def coerce(info: FieldInfo | None, value: Any) -> Any:
    """The value as the provider field holds it; without `info`, only dates become ISO text and lists `A;B`."""
    kind = info.type.lower() if info is not None else ""
    if value is None:
        return None
    if kind in NUMBER:
        return _number(value)
    if kind in BOOLEAN:
        return _boolean(value)
    if kind in DATE:
        return _date(value).isoformat()
    if kind in DATETIME:
        return _datetime(value).isoformat()
    if info is not None and (kind in MULTI or (kind in PICKLIST and isinstance(value, (list, tuple)))):
        values = value if isinstance(value, (list, tuple)) else [v for v in str(value).split(";") if v.strip()]
        return ";".join(_choice(info, v) for v in values)
    if isinstance(value, (list, tuple)):  # a multi-select the schema does not know: the common spelling
        return ";".join(text(v) for v in value)
    if info is not None and kind in PICKLIST:
        return _choice(info, value)
    return value.isoformat() if isinstance(value, (date, datetime)) else value


def _number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise Refused("type", "expects a number")
    if isinstance(value, (int, float)):
        return value
    text = str(value).strip().replace(",", "")
    try:
        number = float(text)
    except ValueError:
        raise Refused("type", "expects a number") from None
    return int(number) if number.is_integer() and "." not in text else number


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in ("true", "yes", "1", "y", "on"):
        return True
    if word in ("false", "no", "0", "n", "off"):
        return False
    raise Refused("type", "expects true or false")


def _date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).date()
    except ValueError:
        raise Refused("type", "expects a date (YYYY-MM-DD)") from None


def _datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise Refused("type", "expects a date-time (ISO 8601)") from None


def _choice(info: FieldInfo, value: Any) -> str:
    """The picklist's own spelling of a value (matched case-insensitively); refused when not in the list."""
    allowed = info.picklist_values
    if not allowed:
        return str(value)
    by_lower = {a.lower(): a for a in allowed}
    found = by_lower.get(str(value).strip().lower())
    if found is None:
        raise Refused("picklist", "not one of the field's allowed values", tuple(allowed))
    return found


def uncoerce(info: FieldInfo | None, value: Any) -> Any:
    """The read direction: a provider's value (often text, as HubSpot's) as its canonical type; unchanged when
    the type is unknown or the value does not parse (reads never fail on the CRM's own data)."""
    kind = info.type.lower() if info is not None else ""
    if value is None or value == "" or info is None:
        return value
    try:
        if kind in NUMBER and isinstance(value, str):
            return _number(value)
        if kind in BOOLEAN and isinstance(value, str):
            return _boolean(value)
    except Refused:
        return value
    if kind in MULTI and isinstance(value, str):
        return [v for v in value.split(";") if v]
    return value
