"""The one field-mapping engine: canonical keys (`lead.budget_max`) ↔ a tenant's provider fields.

Used by the agent's tool routes, the mirror (activities/crm_plan.py) and the tool schemas alike, so the same
input becomes the same CRM payload on every path. A tenant's mapping is its driver's `default_field_catalog`
(a tenant with no overrides behaves exactly as the driver's built-in names) overridden by its rows, per kind:
`write` (canonical → provider field on create/update), `read` (provider field → canonical key on lookups,
search and lists), `object` and `trigger` (kept here so every path reads one mapping).

**The rule for a key the mapping does not know** (one rule, both directions, every path):
- written: a key that is neither a mapped canonical key nor one of the object's known provider fields (mapped,
  or listed by the tenant's introspected schema) is *unmapped content*. For an object with a free-text
  overflow field (a lead's `lead.message`) it is kept there as a `name: value` line; otherwise the write is
  refused with `UnmappedFieldsError`, naming the keys and the closest real fields (never silently dropped,
  never sent to the CRM under a made-up name).
- read: provider fields are renamed to their canonical keys; a field with no read mapping keeps its provider
  name (the raw custom fields the tenant chose to expose stay visible, under their own names).

Values are coerced by the field's introspected type when the tenant's schema snapshot knows it (numbers,
booleans, dates, picklists, multi-select: drivers/mapping_values.py); a value the CRM would refuse raises
`FieldValueError` first.
Field names are schema, not customer content, so errors name them; values are never in a message.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from drivers import mapping_values as values
from drivers.models import CrmObject, FieldInfo

KINDS = ("write", "read", "object", "trigger")
# Objects whose unmapped content is kept in a free-text field rather than refused.
OVERFLOW: dict[str, str] = {CrmObject.LEAD.value: "lead.message"}


@dataclass(frozen=True)
class FieldProblem:
    """One refused key: `code` is unmapped | unknown_field | not_writable | type | picklist | required."""

    key: str
    code: str
    message: str
    suggestions: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.key, "code": self.code, "message": self.message}
        if self.suggestions:
            out["suggestions"] = list(self.suggestions)
        if self.allowed:
            out["allowed"] = list(self.allowed)
        return out


class UnmappedFieldsError(Exception):
    """Content the tenant's mapping cannot write (names only, never values); an operator maps it and redrives."""

    label = "unmapped_fields"

    def __init__(self, keys: Iterable[str], problems: Iterable[FieldProblem] = ()) -> None:
        self.keys = sorted(set(keys))
        self.problems = list(problems) or [FieldProblem(k, "unmapped", f"no CRM field mapped for {k}")
                                           for k in self.keys]
        super().__init__("no CRM field mapped for: " + ", ".join(self.keys))


class FieldValueError(UnmappedFieldsError):
    """A value the tenant's CRM field cannot hold (type or picklist); names the field and the allowed values.

    A subclass so that every caller that stops a write on unmapped content stops it on this too.
    """

    label = "invalid_field_values"

    def __init__(self, problems: Iterable[FieldProblem]) -> None:
        listed = list(problems)
        super().__init__([p.key for p in listed], listed)
        self.args = ("invalid values for: " + ", ".join(self.keys),)


@dataclass(frozen=True)
class TenantMapping:
    """A tenant's effective mapping: defaults + overrides, plus what introspection said about its fields.

    `schema`: canonical object → provider field → FieldInfo (empty when never introspected: no coercion
    beyond dates to ISO text, and only mapped provider fields are known).
    """

    provider: str
    write: dict[str, str]
    read: dict[str, str]
    objects: dict[str, str] = field(default_factory=dict)
    triggers: dict[str, str] = field(default_factory=dict)
    schema: dict[str, dict[str, FieldInfo]] = field(default_factory=dict)
    overrides: tuple[tuple[str, str, str], ...] = ()  # (kind, canonical key, provider field), sorted

    @property
    def version(self) -> str:
        """Changes whenever the mapping or the introspected schema does (agents cache tool schemas by it)."""
        body = json.dumps([self.provider, sorted(self.write.items()), sorted(self.read.items()),
                           sorted(self.objects.items()), sorted(self.triggers.items()),
                           {o: [f.model_dump() for f in sorted(fs.values(), key=lambda f: f.name)]
                            for o, fs in sorted(self.schema.items())}], sort_keys=True, default=str)
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def keys_of(self, object: CrmObject | str) -> dict[str, str]:
        """The object's mapped canonical keys → provider fields (write direction)."""
        prefix = f"{object}."
        return {k: v for k, v in self.write.items() if k.startswith(prefix)}

    def provider_fields(self, object: CrmObject | str) -> set[str]:
        """Every provider field name known for the object: mapped ones and introspected ones."""
        return set(self.keys_of(object).values()) | set(self.schema.get(str(object), {}))

    def custom_fields(self) -> dict[str, list[str]]:
        """Provider fields the tenant's read/write overrides name, per object: reads must ask for them."""
        out: dict[str, list[str]] = {}
        for kind, key, provider_field in self.overrides:
            if kind in ("read", "write") and "." in key:
                out.setdefault(key.partition(".")[0], []).append(provider_field)
        return {obj: list(dict.fromkeys(names)) for obj, names in out.items()}

    def info(self, object: CrmObject | str, provider_field: str) -> FieldInfo | None:
        return self.schema.get(str(object), {}).get(provider_field)


def build(provider: str, catalog: Mapping[str, str], rows: Iterable[tuple[str, str, str]] = (),
          schema: Mapping[str, Iterable[FieldInfo]] | None = None) -> TenantMapping:
    """The effective mapping from the driver's catalog and `(kind, canonical key, provider field)` overrides."""
    rows = sorted(rows)
    maps: dict[str, dict[str, str]] = {"write": dict(catalog), "read": dict(catalog), "object": {}, "trigger": {}}
    for kind, canonical_key, provider_field in rows:
        maps[kind][canonical_key] = provider_field
    snapshot = {obj: {f.name: f for f in fields} for obj, fields in (schema or {}).items()}
    return TenantMapping(provider, maps["write"], maps["read"], maps["object"], maps["trigger"], snapshot, tuple(rows))


def full_key(object: CrmObject | str, key: str) -> str:
    """Short keys (`budget_max`) get the object's prefix; full keys pass as given."""
    return key if "." in key else f"{object}.{key}"


def suggest(word: str, candidates: Iterable[str], n: int = 3, labels: Mapping[str, str] | None = None
            ) -> tuple[str, ...]:
    """The closest real names to a refused one (prefixes ignored, so `budget` finds `lead.budget_max`); a
    candidate's label (`Budget (AED)`) counts as much as its name."""
    wanted = word.rpartition(".")[2].lower()

    def score(candidate: str) -> float:
        spellings = [candidate.rpartition(".")[2].lower(), (labels or {}).get(candidate, "").lower()]
        return max((1.0 if s and (wanted in s or s in wanted) and len(s) > 2 else
                    difflib.SequenceMatcher(None, wanted, s).ratio()) for s in spellings if s)

    scored = sorted(((score(c), c) for c in dict.fromkeys(candidates)), key=lambda sc: (-sc[0], sc[1]))
    return tuple(c for s, c in scored if s >= 0.6)[:n]


def to_provider(mapping: TenantMapping, object: CrmObject | str, record: Mapping[str, Any], *,
                derived: Mapping[str, Any] | None = None, preamble: Iterable[str] = ()) -> dict[str, Any]:
    """A canonical record → the provider payload of one create/update (see the module's rule).

    `record`: content someone gave us (canonical keys, short or full, or the object's provider field names);
    `derived`: keys we composed from other columns (a lead's name from its customer), dropped when unmapped;
    `preamble`: lines that lead the overflow text (the mirror's qualification summary).
    """
    obj = str(object)
    known = mapping.provider_fields(obj)
    out: dict[str, Any] = {}
    problems: list[FieldProblem] = []
    unmapped: dict[str, Any] = {}
    for key, value in (derived or {}).items():
        target = mapping.write.get(full_key(obj, key))
        if target is not None and value is not None:
            out[target] = _coerce(mapping, obj, target, full_key(obj, key), value, problems)
    for key, value in record.items():
        canonical = full_key(obj, key)
        target = mapping.write.get(canonical) if canonical.startswith(f"{obj}.") else None
        if target is None and "." not in key and key in known:
            target = key  # the provider's own field name for this object
        if target is None:
            unmapped[canonical] = value
        else:
            out[target] = _coerce(mapping, obj, target, canonical, value, problems)
    if problems:
        raise FieldValueError(problems)
    lines = [*preamble, *(f"{k.partition('.')[2] or k}: {values.text(v)}" for k, v in sorted(unmapped.items()))]
    overflow = mapping.write.get(OVERFLOW.get(obj, ""))
    if unmapped and overflow is None:
        raise UnmappedFieldsError(unmapped, [_unmapped(mapping, obj, k) for k in sorted(unmapped)])
    if lines:
        if overflow is None:  # a preamble with nowhere to go: the free-text key itself is unmapped
            raise UnmappedFieldsError([OVERFLOW.get(obj, f"{obj}.message")])
        given = out.get(overflow)
        out[overflow] = "\n".join([str(given), *lines] if given else lines)
    return out


def missing_required(mapping: TenantMapping, object: CrmObject | str, payload: Mapping[str, Any]
                     ) -> list[FieldProblem]:
    """Fields the CRM requires on create (its introspected schema) that a payload leaves empty, each named by
    its canonical key where one maps to it; empty when the object was never introspected."""
    obj = str(object)
    keys = {provider: key for key, provider in sorted(mapping.keys_of(obj).items(), reverse=True)}
    return [FieldProblem(keys.get(f.name, f.name), "required", f"{keys.get(f.name, f.name)} ({f.name}) is required "
                         "by the CRM on create")
            for f in sorted(mapping.schema.get(obj, {}).values(), key=lambda f: f.name)
            if f.required and not f.read_only and payload.get(f.name) in (None, "")]


def to_canonical(mapping: TenantMapping, object: CrmObject | str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Provider fields → the tenant's canonical keys (read mappings), values as their introspected type
    (numbers, booleans, multi-select lists); unmapped fields keep their names."""
    prefix = f"{object}."
    names = {provider: key for key, provider in mapping.read.items() if key.startswith(prefix)}
    return {names.get(name, name): values.uncoerce(mapping.info(object, name), value) for name, value in fields.items()}


def trigger_names(mapping: TenantMapping) -> dict[str, str]:
    """What a trigger condition's field may name: a canonical key mapped with kind `trigger`, else one the
    tenant's write mapping knows (its defaults included); anything else is taken as a provider field name."""
    return mapping.write | mapping.triggers


def _unmapped(mapping: TenantMapping, obj: str, key: str) -> FieldProblem:
    candidates = [*mapping.keys_of(obj), *mapping.schema.get(obj, {})]
    return FieldProblem(key, "unmapped", f"{key} is not a mapped {obj} field", suggest(key, candidates))


def _coerce(mapping: TenantMapping, obj: str, target: str, key: str, value: Any, problems: list[FieldProblem]
            ) -> Any:
    """The value as the provider field holds it; a problem (and the value unchanged) when it cannot."""
    try:
        return values.coerce(mapping.info(obj, target), value)
    except values.Refused as refused:
        problems.append(FieldProblem(key, refused.code, f"{key} ({target}): {refused}", allowed=refused.allowed))
        return value
