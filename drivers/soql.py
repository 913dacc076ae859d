"""Binding values into Salesforce SOQL and SOSL text.

Salesforce's REST query API has no bind parameters, so every customer-supplied value goes through these
functions; nothing else may build a literal. Escapes follow the SOQL/SOSL reference: backslash escapes in
quoted strings, and a backslash before each SOSL reserved character.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["soql_datetime", "soql_quote", "sosl_escape"]

_SOQL_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}
_SOSL_RESERVED = set("?&|!{}[]()^~*:\\\"'+-")


def soql_quote(value: str) -> str:
    """A quoted SOQL string literal for an equality comparison (not for LIKE patterns)."""
    return "'" + "".join(_SOQL_ESCAPES.get(ch, ch) for ch in value) + "'"


def sosl_escape(term: str) -> str:
    """A SOSL search term with every reserved character escaped, so it is searched for literally."""
    return "".join("\\" + ch if ch in _SOSL_RESERVED else ch for ch in term.replace("\n", " ").replace("\r", " "))


def soql_datetime(moment: datetime) -> str:
    """A SOQL datetime literal (UTC, whole seconds, unquoted); naive datetimes are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
