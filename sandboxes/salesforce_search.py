"""SOSL matching for the Salesforce sandbox: which rows a parsed `FIND` returns, per RETURNING object."""

from __future__ import annotations

from typing import Any

from sandboxes import salesforce_schema as schema
from sandboxes.salesforce_query import Sosl


def _digits(value: Any) -> str:
    return "".join(ch for ch in str(value or "") if ch.isdigit())


def _phone_hit(term: str, row: dict[str, Any], names: list[str]) -> bool:
    # Salesforce matches phone fields whatever their formatting; compare digits, allowing a country code
    # on either side (7 digits is the shortest local number worth matching).
    wanted = _digits(term)
    if len(wanted) < 7:
        return False
    for name in names:
        have = _digits(row.get(name))
        if len(have) >= 7 and (have.endswith(wanted) or wanted.endswith(have)):
            return True
    return False


def _scope_fields(sobject: str, scope: str) -> list[str]:
    fields = schema.fields_of(sobject)
    if scope == "PHONE":
        return [n for n, (t, _) in fields.items() if t == "phone"]
    if scope == "EMAIL":
        return [n for n, (t, _) in fields.items() if t == "email"]
    if scope == "NAME":
        return [n for n in fields if n in schema.NAME_FIELDS]
    return [n for n, (t, _) in fields.items() if t in schema.TEXT_TYPES]


def sosl_hits(state: Any, sosl: Sosl) -> list[tuple[str, dict[str, Any], list[str]]]:
    """(sobject, row, fields to return) for every match, in RETURNING order."""
    out: list[tuple[str, dict[str, Any], list[str]]] = []
    for sobject, fields, limit in sosl.returning:
        if sobject not in schema.ID_PREFIX:
            continue
        names = _scope_fields(sobject, sosl.scope)
        hits = []
        for row in state.live(sobject):
            if sosl.scope == "PHONE":
                matched = bool(sosl.term) and _phone_hit("".join(sosl.term), row, names)
            else:
                text = " ".join(str(row.get(n) or "") for n in names).lower()
                matched = bool(sosl.term) and all(word.lower() in text for word in sosl.term)
            if matched:
                hits.append((sobject, row, fields))
        out.extend(hits[: limit or 2000])
    return out
