"""Salesforce's batch customer match: one SOQL query for a chunk of customers, instead of a SOSL search each.

`SELECT … FROM Contact WHERE Id IN (hints) OR Email IN (…) OR Phone IN (…) OR MobilePhone IN (…)`, newest first,
with the rules of the single lookup: an index hint (`MatchItem.known_id`) still carrying the phone, then the
phone (normalized to E.164, country included: SOQL matches stored strings, so each number is asked in every
spelling a tenant types: `phone_formats` and dotted ones), then the email (case-insensitive; the most recently
modified contact, as `ORDER BY LastModifiedDate DESC LIMIT 1` picks). The query travels in the URL: customers
are packed into a query until it would pass `_MAX_URL` bytes (Salesforce refuses URIs over 16,384 bytes), so a
batch of 200 takes a few queries rather than one; the answer's pages (`nextRecordsUrl`) are followed.
This module is the driver's own (it uses the driver's request plumbing), split off to keep drivers/salesforce.py
short.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx

from drivers.errors import InvalidRequestError
from drivers.models import MatchItem
from drivers.soql import soql_quote
from drivers.text import normalize_phone, phone_formats

if TYPE_CHECKING:
    from drivers.salesforce import SalesforceDriver

_MAX_URL = 14_000  # bytes of path + encoded query, under the 16,384-byte URI limit with room for the host
_FIELDS = "Id, Email, Phone, MobilePhone, LastModifiedDate"


async def match_customers(driver: SalesforceDriver, items: Sequence[MatchItem]) -> dict[str, str | None]:
    if len(items) > driver.match_size:
        raise InvalidRequestError(f"at most {driver.match_size} customers per match", provider=driver.slug)
    phones = {item.key: normalize_phone(item.phone, driver.default_region) if item.phone else None for item in items}
    rows: list[dict[str, Any]] = []
    for soql in _queries(driver, items, phones):
        rows += await _rows(driver, soql)
    rows.sort(key=lambda row: str(row.get("LastModifiedDate") or ""), reverse=True)  # newest first, across queries
    by_id = {str(row["Id"]): row for row in rows}
    by_phone: dict[str, str] = {}
    by_email: dict[str, str] = {}
    for row in rows:
        for number in _numbers(driver, row):
            by_phone.setdefault(number, str(row["Id"]))
        if row.get("Email"):
            by_email.setdefault(str(row["Email"]).lower(), str(row["Id"]))
    found: dict[str, str | None] = {}
    for item in items:
        e164 = phones[item.key]
        hint = by_id.get(str(item.known_id)) if item.known_id and e164 else None
        if hint is not None and e164 in _numbers(driver, hint):
            found[item.key] = str(hint["Id"])
        elif e164 is not None and e164 in by_phone:
            found[item.key] = by_phone[e164]
        else:
            found[item.key] = by_email.get(item.email.strip().lower()) if item.email and item.email.strip() else None
    return found


def _queries(driver: SalesforceDriver, items: Sequence[MatchItem], phones: dict[str, str | None]) -> list[str]:
    """SOQL statements covering every item, each short enough for the URL."""
    queries: list[str] = []
    chosen: tuple[list[str], list[str], list[str]] = ([], [], [])  # ids, emails, phone spellings
    for item in items:
        e164 = phones[item.key]
        ids = [soql_quote(item.known_id)] if item.known_id and e164 else []
        email = item.email.strip() if item.email else ""
        emails = [soql_quote(e) for e in dict.fromkeys([email, email.lower()]) if e]
        spellings = [soql_quote(s) for s in _spellings(e164)] if e164 else []
        if not (ids or emails or spellings):
            continue
        grown = (chosen[0] + ids, chosen[1] + emails, chosen[2] + spellings)
        if any(chosen) and _length(driver, _soql(*grown)) > _MAX_URL:
            queries.append(_soql(*chosen))
            grown = (ids, emails, spellings)
        chosen = grown
    if any(chosen):
        queries.append(_soql(*chosen))
    return queries


def _spellings(e164: str) -> list[str]:
    """`phone_formats`, and the dotted spellings (`415.555.0100`) SOSL would have matched too."""
    spelled = phone_formats(e164)
    dotted = [s.replace("(", "").replace(")", "").replace(" ", ".").replace("-", ".") for s in spelled[3:6]]
    return list(dict.fromkeys([*spelled, *dotted]))


def _soql(ids: list[str], emails: list[str], spellings: list[str]) -> str:
    def within(name: str, values: list[str]) -> list[str]:
        return [f"{name} IN ({', '.join(dict.fromkeys(values))})"] if values else []

    where = within("Id", ids) + within("Email", emails) + within("Phone", spellings) + within("MobilePhone", spellings)
    return f"SELECT {_FIELDS} FROM Contact WHERE {' OR '.join(where)} ORDER BY LastModifiedDate DESC"


def _length(driver: SalesforceDriver, soql: str) -> int:
    return len(f"{driver._data}/query?{httpx.QueryParams({'q': soql})}".encode())


async def _rows(driver: SalesforceDriver, soql: str) -> list[dict[str, Any]]:
    page = await driver._request_json("GET", f"{driver._data}/query", params={"q": soql})
    rows = list(page.get("records") or [])
    while not page.get("done", True) and page.get("nextRecordsUrl"):
        page = await driver._request_json("GET", page["nextRecordsUrl"])
        rows += page.get("records") or []
    return rows


def _numbers(driver: SalesforceDriver, row: dict[str, Any]) -> set[str]:
    raw = (row.get(name) for name in ("Phone", "MobilePhone"))
    return {e for e in (normalize_phone(str(v), driver.default_region) for v in raw if v) if e}
