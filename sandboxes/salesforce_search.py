"""SOSL for the Salesforce sandbox: parsing `FIND {…} IN … FIELDS RETURNING …` and which rows it returns."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sandboxes import salesforce_schema as schema
from sandboxes.salesforce_query import QueryError


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


@dataclass
class Sosl:
    term: list[str]
    scope: str
    returning: list[tuple[str, list[str], int | None]]


_SOSL = re.compile(
    r"^\s*FIND\s*\{(?P<term>(?:[^{}\\]|\\.)*)\}\s*(?:IN\s+(?P<scope>ALL|NAME|EMAIL|PHONE)\s+FIELDS\s*)?"
    r"(?:RETURNING\s+(?P<ret>.+?))?\s*(?:LIMIT\s+(?P<limit>\d+))?\s*$",
    re.I | re.S,
)
_RETURNING_LIST = re.compile(r"\s*\w+\s*(?:\([^(){}]*\))?\s*(?:,\s*\w+\s*(?:\([^(){}]*\))?\s*)*")
_RETURN = re.compile(r"\s*(\w+)\s*(?:\(([^()]*)\))?\s*(?:,|$)")


def parse_sosl(text: str) -> Sosl:
    m = _SOSL.match(text)
    if m is None:
        raise QueryError("MALFORMED_SEARCH", "No search term found. The search term must be enclosed in braces.")
    words: list[str] = []
    current, chars = "", iter(m.group("term"))
    for ch in chars:
        if ch == "\\":
            current += next(chars, "")
        elif ch.isspace():
            words, current = ([*words, current] if current else words), ""
        elif ch in '*?"':  # wildcards and phrase quotes: the sandbox matches by substring anyway
            continue
        elif ch in "&|!{}[]()^~:'+-":
            raise QueryError("MALFORMED_SEARCH", "unescaped reserved character in the search term")
        else:
            current += ch
    words = [*words, current] if current else words
    if sum(len(word) for word in words) < 2:
        # "search term must be longer than one character" (SOSL FIND clause; wildcards do not count).
        raise QueryError("MALFORMED_SEARCH", "search term must be longer than one character")
    if m.group("ret") and not _RETURNING_LIST.fullmatch(m.group("ret")):
        raise QueryError("MALFORMED_SEARCH", "unexpected token in the RETURNING clause")
    returning = []
    for obj, inner in _RETURN.findall(m.group("ret") or ""):
        obj = schema.canonical_sobject(obj) or obj  # sObject names are case-insensitive
        limit = re.search(r"\bLIMIT\s+(\d+)\s*$", inner or "", re.I)
        names = re.sub(r"\bLIMIT\s+\d+\s*$", "", inner or "", flags=re.I)
        fields = [f.strip() for f in names.split(",") if f.strip()]
        if obj in schema.ID_PREFIX:
            fields = [schema.canonical_field(obj, f) or f for f in fields]
        returning.append((obj, fields, int(limit.group(1)) if limit else None))
    if m.group("limit"):
        returning = [(o, f, min(lim or 2000, int(m.group("limit")))) for o, f, lim in returning]
    return Sosl(words, (m.group("scope") or "ALL").upper(), returning)
