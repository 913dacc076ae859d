"""The Odoo 17 models the sandbox serves (their `fields_get` answers) and Odoo's domain language.

Field attributes follow the recorded `fields_get` of a real Odoo 17 Community server with `crm` installed
(../shared/provider-specs/odoo/recorded-odoo17-rpc-session-1.json); domains are Odoo's prefix (Polish)
notation: `["|", [f, op, v], [f, op, v]]`, consecutive terms joined by an implicit "&".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any


def _f(string: str, type: str, *, required: bool = False, readonly: bool = False, relation: str | None = None,
       selection: list[list[str]] | None = None) -> dict[str, Any]:
    field: dict[str, Any] = {"string": string, "type": type, "required": required, "readonly": readonly}
    if relation:
        field["relation"] = relation
    if selection is not None:
        field["selection"] = selection
    return field


_COMMON = {
    "id": _f("ID", "integer", readonly=True),
    "display_name": _f("Display Name", "char", readonly=True),
    "create_date": _f("Created on", "datetime", readonly=True),
    "write_date": _f("Last Updated on", "datetime", readonly=True),
}
_ACTIVE = {"active": _f("Active", "boolean")}

FIELDS: dict[str, dict[str, dict[str, Any]]] = {
    "res.partner": _COMMON | _ACTIVE | {
        "name": _f("Name", "char"),
        "email": _f("Email", "char"),
        "phone": _f("Phone", "char"),
        "mobile": _f("Mobile", "char"),
        "phone_sanitized": _f("Sanitized Number", "char", readonly=True),
        "phone_mobile_search": _f("Phone/Mobile", "char"),
        "ref": _f("Reference", "char"),
        "comment": _f("Notes", "html"),
        "function": _f("Job Position", "char"),
        "city": _f("City", "char"),
        "street": _f("Street", "char"),
        "website": _f("Website Link", "char"),
        "type": _f("Address Type", "selection", selection=[
            ["contact", "Contact"], ["invoice", "Invoice Address"], ["delivery", "Delivery Address"],
            ["other", "Other Address"]]),
        "country_id": _f("Country", "many2one", relation="res.country"),
        "category_id": _f("Tags", "many2many", relation="res.partner.category"),
    },
    "crm.lead": _COMMON | _ACTIVE | {
        "name": _f("Opportunity", "char", required=True),
        "type": _f("Type", "selection", required=True, selection=[["lead", "Lead"], ["opportunity", "Opportunity"]]),
        "partner_id": _f("Customer", "many2one", relation="res.partner"),
        "contact_name": _f("Contact Name", "char"),
        "partner_name": _f("Company Name", "char"),
        "email_from": _f("Email", "char"),
        "phone": _f("Phone", "char"),
        "mobile": _f("Mobile", "char"),
        "phone_mobile_search": _f("Phone/Mobile", "char"),
        "stage_id": _f("Stage", "many2one", relation="crm.stage"),
        "user_id": _f("Salesperson", "many2one", relation="res.users"),
        "team_id": _f("Sales Team", "many2one", relation="crm.team"),
        "expected_revenue": _f("Expected Revenue", "monetary"),
        "probability": _f("Probability", "float"),
        "priority": _f("Priority", "selection", selection=[["0", "Low"], ["1", "Medium"], ["2", "High"],
                                                           ["3", "Very High"]]),
        "description": _f("Notes", "html"),
    },
    "mail.message": _COMMON | {
        "body": _f("Contents", "html"),
        "model": _f("Related Document Model", "char"),
        "res_id": _f("Related Document ID", "many2one_reference"),
        "message_type": _f("Type", "selection", required=True, selection=[
            ["email", "Email"], ["comment", "Comment"], ["notification", "System notification"]]),
        "subtype_id": _f("Subtype", "many2one", relation="mail.message.subtype"),
        "author_id": _f("Author", "many2one", relation="res.partner"),
        "date": _f("Date", "datetime"),
    },
    "ir.model.data": _COMMON | {
        "module": _f("Module", "char", required=True),
        "name": _f("External Identifier", "char", required=True),
        "model": _f("Model Name", "char", required=True),
        "res_id": _f("Record ID", "many2one_reference"),
        "noupdate": _f("Non Updatable", "boolean"),
    },
}

# Records every fresh database has (no demo data), so ids and names look like the recorded server's.
FIXED: dict[str, dict[int, str]] = {
    "crm.stage": {1: "New", 2: "Qualified", 3: "Proposition", 4: "Won"},
    "crm.team": {1: "Sales"},
    "res.users": {2: "Administrator"},
    "res.country": {233: "United States"},
    "mail.message.subtype": {1: "Discussions", 2: "Note"},
}


def digits(value: Any) -> str:
    return re.sub(r"\D", "", value) if isinstance(value, str) else ""


def _like(pattern: str, value: Any, *, ci: bool) -> bool:
    if not isinstance(value, str):
        return False
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL if ci else re.DOTALL) is not None


def _compare(op: str, value: Any, wanted: Any) -> bool:
    if value is False or value is None:
        return False
    try:
        return bool({">": value > wanted, ">=": value >= wanted, "<": value < wanted, "<=": value <= wanted}[op])
    except TypeError:
        return False


def _leaf(row: dict[str, Any], leaf: Sequence[Any]) -> bool:
    field, op, wanted = leaf
    if field == "phone_mobile_search":  # phone_validation's mixin: formatting stripped on both sides
        needle = digits(wanted)
        return bool(needle) and any(needle in digits(row.get(f)) for f in ("phone", "mobile"))
    value = row.get(field, False)
    if isinstance(value, list) and len(value) == 2 and isinstance(value[0], int):
        value = value[0]  # a many2one compares by id
    tests: dict[str, Callable[[], bool]] = {
        "=": lambda: value == wanted or (wanted is False and value in (None, "")),
        "!=": lambda: value != wanted,
        "in": lambda: value in wanted,
        "not in": lambda: value not in wanted,
        "=like": lambda: _like(wanted, value, ci=False),
        "=ilike": lambda: _like(wanted, value, ci=True),
        "like": lambda: isinstance(value, str) and str(wanted) in value,
        "ilike": lambda: isinstance(value, str) and str(wanted).lower() in value.lower(),
        "not ilike": lambda: not (isinstance(value, str) and str(wanted).lower() in value.lower()),
    }
    if op in tests:
        return bool(tests[op]())
    if op in (">", ">=", "<", "<="):
        return _compare(op, value, wanted)
    raise ValueError(f"Invalid leaf {list(leaf)!r}")


def _node(domain: Sequence[Any], i: int) -> tuple[Callable[[dict[str, Any]], bool], int]:
    token = domain[i]
    if token in ("&", "|"):
        left, i = _node(domain, i + 1)
        right, i = _node(domain, i)
        if token == "&":
            return (lambda r: left(r) and right(r)), i
        return (lambda r: left(r) or right(r)), i
    if token == "!":
        inner, i = _node(domain, i + 1)
        return (lambda r: not inner(r)), i
    if not isinstance(token, list | tuple) or len(token) != 3:
        raise ValueError(f"Invalid leaf {token!r}")
    return (lambda r: _leaf(r, token)), i + 1


def compile_domain(domain: Sequence[Any]) -> Callable[[dict[str, Any]], bool]:
    """A predicate over raw rows; ValueError (Odoo's own) for a malformed domain."""
    parts: list[Callable[[dict[str, Any]], bool]] = []
    i = 0
    while i < len(domain):
        node, i = _node(domain, i)
        parts.append(node)
    return lambda row: all(p(row) for p in parts)


def mentions(domain: Sequence[Any], field: str) -> bool:
    return any(isinstance(t, list | tuple) and len(t) == 3 and t[0] == field for t in domain)
