"""Salesforce's batch write through sObject Collections (API v46.0+): up to 200 records a call, per-item results.

Known ids go to one `PATCH /composite/sobjects` (update by Id). New items are keyed like the single create:
their keys are read first with SOQL (`CrmSorKey__c IN (…)`), so a key already written is replayed (same
fingerprint) or refused with a ConflictError naming the record that holds it — never overwritten — and the
rest go to one `PATCH /composite/sobjects/{SObject}/CrmSorKey__c` (upsert by external id). Both run with
`allOrNone: false`, so a bad record fails alone (`success: false` with its `errors`). A failure of the call
itself (401, 403 REQUEST_LIMIT_EXCEEDED, 5xx, a malformed request) raises, as a single call would.
This module is the driver's own (it uses the driver's request plumbing), split off to keep drivers/salesforce.py
short.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from drivers.errors import ConflictError, DriverError, InvalidRequestError, NotFoundError, UnavailableError
from drivers.idempotency import provider_key, request_fingerprint, settled_before_write
from drivers.models import CrmObject, UpsertItem, UpsertOutcome
from drivers.soql import soql_quote

if TYPE_CHECKING:
    from drivers.salesforce import SalesforceDriver

CONFLICT_CODES = {"DUPLICATE_VALUE", "DUPLICATES_DETECTED", "DUPLICATE_EXTERNAL_ID"}
_NOT_FOUND_CODES = {"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY", "NOT_FOUND"}
_KEYS_PER_QUERY = 100  # keeps the SOQL in the URL well under Salesforce's 16,384-byte URI limit


async def upsert_many(driver: SalesforceDriver, obj: CrmObject, sobject: str, items: Sequence[UpsertItem]
                      ) -> list[UpsertOutcome]:
    if len(items) > driver.batch_size:
        raise InvalidRequestError(f"at most {driver.batch_size} records per batch", provider=driver.slug)
    outcomes: dict[int, UpsertOutcome] = {}
    updates = [(i, it) for i, it in enumerate(items) if it.external_id is not None]
    if updates:
        records = [{"attributes": {"type": sobject}, "id": it.external_id, **it.fields} for _, it in updates]
        results = await _collection(driver, f"{driver._data}/composite/sobjects", records)
        for (i, _), result in zip(updates, results, strict=True):
            outcomes[i] = _outcome(driver, result, created=False)
    creates = [(i, it, provider_key(it.idempotency_key), request_fingerprint(obj, it.fields))
               for i, it in enumerate(items) if it.external_id is None]
    known = await _keyed(driver, sobject, list(dict.fromkeys(key for _, _, key, _ in creates)))
    fresh: list[tuple[int, dict[str, Any]]] = []
    taken: set[str] = set()
    for i, it, key, fingerprint in creates:
        settled = settled_before_write(driver.slug, key, fingerprint, taken, known)
        if settled is not None:  # the key twice in this batch, or already written: no write for this item
            outcomes[i] = settled
            continue
        fresh.append((i, {"attributes": {"type": sobject}, **it.fields, driver._key_field: key,
                          driver._fingerprint_field: fingerprint}))
    if fresh:
        path = f"{driver._data}/composite/sobjects/{sobject}/{driver._key_field}"
        results = await _collection(driver, path, [record for _, record in fresh])
        for (i, _), result in zip(fresh, results, strict=True):
            outcomes[i] = _outcome(driver, result, created=None)
    return [outcomes[i] for i in range(len(items))]


async def _keyed(driver: SalesforceDriver, sobject: str, keys: list[str]) -> dict[str, tuple[str, str | None]]:
    """key -> (record id, stored fingerprint) for the keys a live record holds."""
    found: dict[str, tuple[str, str | None]] = {}
    key_field, fingerprint_field = driver._key_field, driver._fingerprint_field
    for start in range(0, len(keys), _KEYS_PER_QUERY):
        chosen = ", ".join(soql_quote(key) for key in keys[start:start + _KEYS_PER_QUERY])
        soql = f"SELECT Id, {key_field}, {fingerprint_field} FROM {sobject} WHERE {key_field} IN ({chosen})"
        page = await driver._request_json("GET", f"{driver._data}/query", params={"q": soql})
        for row in page.get("records") or []:  # at most one page: 100 keys, each on at most one record
            found[str(row[key_field])] = (str(row["Id"]), row.get(fingerprint_field))
    return found


async def _collection(driver: SalesforceDriver, path: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    answer = await driver._request_json("PATCH", path, json={"allOrNone": False, "records": records})
    if not isinstance(answer, list) or len(answer) != len(records):
        raise UnavailableError("sObject Collections answered without one result per record", provider=driver.slug)
    return answer


def _outcome(driver: SalesforceDriver, result: dict[str, Any], *, created: bool | None) -> UpsertOutcome:
    if result.get("success"):
        made = bool(result.get("created")) if created is None else created
        return UpsertOutcome(external_id=str(result["id"]), created=made)
    # Only the status code is kept: Salesforce's messages may echo field values.
    code = str(((result.get("errors") or [{}])[0]).get("statusCode") or "UNKNOWN_EXCEPTION")
    if code in CONFLICT_CODES:
        cls: type[DriverError] = ConflictError
        status = 409
    elif code in _NOT_FOUND_CODES:
        cls, status = NotFoundError, 404
    else:
        cls, status = InvalidRequestError, 400
    return UpsertOutcome(error=cls(f"record refused ({code})", provider=driver.slug, status_code=status,
                                   provider_code=code))
