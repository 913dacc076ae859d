"""What the field-mapping page shows, built from what the mapping services return (no rule of the engine here).

Pure functions over a `TenantMapping`, the services' `mapping_view` entries and the `report` of the last
introspection: per object, our canonical keys with the CRM field each is written to / read from, beside the CRM's
introspected fields (labels, types, picklist values, which keys map to each). Also the sample-record parser of the
preview form (`key: value` lines: what an account manager can type).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from drivers.mapping import TenantMapping
from drivers.models import FieldInfo

OBJECTS = ("customer", "lead", "deal", "case", "appointment", "note")  # the page's order
# The edit form's kind choices: "write and read" sets both overrides (a custom field is usually wanted both ways).
KIND_CHOICES = {"write,read": "write and read", "write": "write only", "read": "read only",
                "trigger": "trigger name", "object": "object"}
MAX_SAMPLE_LINES = 200


@dataclass(frozen=True)
class KeyRow:
    """One canonical key of an object and the CRM field it maps to, for one or both directions."""

    key: str
    kinds: tuple[str, ...]
    provider_field: str
    source: str  # default | override
    info: FieldInfo | None  # what the CRM said about the field (None: not introspected, or the CRM lacks it)

    @property
    def kinds_value(self) -> str:
        return ",".join(self.kinds)

    @property
    def kinds_label(self) -> str:
        return KIND_CHOICES.get(self.kinds_value, self.kinds_value)


@dataclass(frozen=True)
class CrmField:
    info: FieldInfo
    mapped_from: tuple[str, ...]  # canonical keys written to or read from this field


@dataclass(frozen=True)
class ObjectView:
    name: str
    keys: list[KeyRow]
    fields: list[CrmField]  # empty until the object was introspected
    introspected: bool
    problems: list[dict[str, Any]] = field(default_factory=list)  # the report's, for this object
    required_unmapped: list[FieldInfo] = field(default_factory=list)


def objects_of(mapping: TenantMapping, entries: list[dict[str, Any]], supported: Iterable[str],
               checks: dict[str, Any] | None) -> list[ObjectView]:
    """One view per object the driver supports, in the page's order."""
    wanted = set(supported)
    out = []
    for obj in [o for o in OBJECTS if o in wanted]:
        schema = mapping.schema.get(obj, {})
        keys = _key_rows(obj, entries, schema)
        mapped: dict[str, list[str]] = {}
        for row in keys:
            mapped.setdefault(row.provider_field, []).append(row.key)
        fields = [CrmField(info, tuple(mapped.get(name, ()))) for name, info in sorted(schema.items())]
        checked = (checks or {}).get("objects", {}).get(obj, {})
        required = [schema[name] for name in checked.get("required_unmapped", []) if name in schema]
        out.append(ObjectView(obj, keys, fields, bool(schema), list(checked.get("problems", [])), required))
    return out


def other_entries(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Object and trigger mappings (not per object)."""
    return [e for e in entries if e["kind"] in ("object", "trigger")]


def _key_rows(obj: str, entries: list[dict[str, Any]], schema: dict[str, FieldInfo]) -> list[KeyRow]:
    per_key: dict[str, dict[str, tuple[str, str]]] = {}
    for entry in entries:
        if entry["kind"] in ("write", "read") and entry["key"].startswith(f"{obj}."):
            per_key.setdefault(entry["key"], {})[entry["kind"]] = (entry["provider_field"], entry["source"])
    rows = []
    for key, kinds in sorted(per_key.items()):
        if len(kinds) == 2 and kinds["write"] == kinds["read"]:
            target, source = kinds["write"]
            rows.append(KeyRow(key, ("write", "read"), target, source, schema.get(target)))
            continue
        for kind, (target, source) in sorted(kinds.items(), reverse=True):  # write before read
            rows.append(KeyRow(key, (kind,), target, source, schema.get(target)))
    return rows


def labelled(names: Iterable[str], mapping: TenantMapping, obj: str) -> list[tuple[str, str]]:
    """Field names with the CRM's label for each (the name again when the label is not known)."""
    schema = mapping.schema.get(obj, {})
    return [(name, schema[name].label if name in schema else "") for name in names]


def sample_fields(text: str) -> dict[str, str]:
    """The preview form's sample record: one `key: value` per line (blank lines skipped).

    Raises ValueError naming the line (by number, never its content) that is not `key: value` or repeats a key.
    """
    fields: dict[str, str] = {}
    lines = text.splitlines()
    if len(lines) > MAX_SAMPLE_LINES:
        raise ValueError(f"At most {MAX_SAMPLE_LINES} lines.")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        key, colon, value = line.partition(":")
        key = key.strip()
        if not colon or not key or " " in key:
            raise ValueError(f"Line {number} is not “key: value” (for example “budget_max: 1,250,000”).")
        if key in fields:
            raise ValueError(f"Line {number} repeats the key {key[:100]}.")
        fields[key] = value.strip()
    return fields
