"""HubSpot's batch customer match: up to 100 customers in a few calls, instead of a search each.

In order, each step only for the customers the steps before left unmatched:
1. phone index hints (`MatchItem.known_id`): one `batch/read` by record id, each hint kept when the record still
   carries the phone (reads by id are consistent; no search);
2. email: one `batch/read` with `idProperty=email`. Email is unique for contacts, so this is exact, consistent
   (not subject to the search index's lag) and outside the search endpoints' own rate limit; it is also the
   record a create with that email would collide with, so a customer found by email is matched by it;
3. phone: one search for all the phones left, as OR-ed filter groups within HubSpot's caps (4 groups of one
   filter each, at most `PHONES_PER_SEARCH` values per `IN`): the calculated searchable numbers (the national
   digits whatever the stored formatting) and the stored `phone`/`mobilephone` in E.164. Each hit is checked to
   carry the number once normalized (country included), as the single lookup does.
Missing ids in a `batch/read` come back as a 207 with an OBJECT_NOT_FOUND entry, which is "not found", not an error.
This module is the driver's own (it uses the driver's request plumbing), split off to keep drivers/hubspot.py short.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from drivers.errors import InvalidRequestError
from drivers.models import CrmObject, MatchItem
from drivers.text import national_digits, normalize_phone

if TYPE_CHECKING:
    from drivers.hubspot import HubSpotDriver

# Values per IN filter: HubSpot documents the group and filter caps (5 / 10 / 25) but no value cap we could
# verify; 100, its batch size, is a conservative figure. One search covers this many phones.
PHONES_PER_SEARCH = 100
_MAX_HITS = 1000  # search results read per phone search (5 pages of 200): duplicates beyond it are not needed
_PHONES = ("phone", "mobilephone")


async def match_customers(driver: HubSpotDriver, items: Sequence[MatchItem]) -> dict[str, str | None]:
    if len(items) > driver.match_size:
        raise InvalidRequestError(f"at most {driver.match_size} customers per match", provider=driver.slug)
    found: dict[str, str | None] = {item.key: None for item in items}
    phones = {item.key: normalize_phone(item.phone, driver.default_region) if item.phone else None for item in items}
    hinted = [item for item in items if item.known_id and phones[item.key]]
    if hinted:
        records = await _batch_read(driver, [str(item.known_id) for item in hinted], None, list(_PHONES))
        for item in hinted:
            record = records.get(str(item.known_id))
            if record is not None and _carries(driver, record, str(phones[item.key])):
                found[item.key] = str(record["id"])
    emailed = [item for item in items if found[item.key] is None and item.email and item.email.strip()]
    if emailed:
        emails = [str(item.email).strip().lower() for item in emailed]
        records = await _batch_read(driver, list(dict.fromkeys(emails)), "email", ["email"])
        by_email = {str((r.get("properties") or {}).get("email") or "").lower(): str(r["id"]) for r in records.values()}
        for item, email in zip(emailed, emails, strict=True):
            found[item.key] = by_email.get(email)
    wanted = list(dict.fromkeys(e for item in items if found[item.key] is None and (e := phones[item.key])))
    hits: dict[str, str] = {}
    for start in range(0, len(wanted), PHONES_PER_SEARCH):
        hits |= await _search_phones(driver, wanted[start:start + PHONES_PER_SEARCH])
    for item in items:
        e164 = phones[item.key]
        if found[item.key] is None and e164 is not None:
            found[item.key] = hits.get(e164)
    return found


async def _batch_read(driver: HubSpotDriver, ids: list[str], id_property: str | None, properties: list[str]
                      ) -> dict[str, dict[str, Any]]:
    """Records by the id they were asked by (the record id, or the `id_property` value as stored)."""
    body: dict[str, Any] = {"inputs": [{"id": value} for value in ids], "properties": properties}
    if id_property is not None:
        body["idProperty"] = id_property
    answer = driver._json("POST", await driver._request("POST", "/crm/v3/objects/contacts/batch/read", json=body))
    records = (answer or {}).get("results") or []
    if id_property is None:
        return {str(r["id"]): r for r in records}
    return {str((r.get("properties") or {}).get(id_property)): r for r in records}


async def _search_phones(driver: HubSpotDriver, e164s: list[str]) -> dict[str, str]:
    """E.164 -> the first contact found carrying it, for up to PHONES_PER_SEARCH numbers in one search."""
    nationals = list(dict.fromkeys(national_digits(e) for e in e164s))
    filters: list[dict[str, Any]] = [
        {"propertyName": f"hs_searchable_calculated_{kind}_number", "operator": "IN", "values": nationals}
        for kind in ("phone", "mobile")
    ] + [{"propertyName": name, "operator": "IN", "values": e164s} for name in _PHONES]
    body = {"filterGroups": [{"filters": [one]} for one in filters],
            "properties": driver._properties(CrmObject.CUSTOMER)}
    wanted, hits = set(e164s), dict[str, str]()
    for result in await driver._search("contacts", body, _MAX_HITS):
        for e164 in _numbers(driver, result):
            if e164 in wanted:
                hits.setdefault(e164, str(result["id"]))
    return hits


def _numbers(driver: HubSpotDriver, record: dict[str, Any]) -> Iterable[str]:
    props = record.get("properties") or {}
    for name in _PHONES:
        e164 = normalize_phone(str(props[name]), driver.default_region) if props.get(name) else None
        if e164 is not None:
            yield e164


def _carries(driver: HubSpotDriver, record: dict[str, Any], e164: str) -> bool:
    return e164 in set(_numbers(driver, record))
