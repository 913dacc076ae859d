"""HubSpot's batch write: up to 100 records a call through `batch/update` (known ids) and `batch/upsert` by the
unique idempotency property, with per-item outcomes.

Idempotency is the single create's, per batch: the keys are read first in one `batch/read` by `idProperty`
(consistent, unlike search), so a key already written is replayed (same fingerprint) or refused with a
ConflictError naming the record that holds it (other fields) — never overwritten by the upsert. The rest go
to one `batch/upsert`. Every input carries an `objectWriteTraceId` (its index), which makes HubSpot answer a
partly failed call with 207 Multi-Status: the failed inputs are listed in `errors` by trace id and fail alone.
A failure of the call itself (401, 429, 5xx, a malformed batch) raises, as a single call would.
This module is the driver's own (it uses the driver's request plumbing), split off to keep drivers/hubspot.py short.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from drivers.errors import (
    ConflictError,
    DriverError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    UnavailableError,
)
from drivers.idempotency import provider_key, request_fingerprint, settled_before_write
from drivers.models import CrmObject, UpsertItem, UpsertOutcome

if TYPE_CHECKING:
    from drivers.hubspot import HubSpotDriver

# A failed input's `category` -> (taxonomy class, the status a single call would have answered).
_CATEGORIES: dict[str, tuple[type[DriverError], int]] = {
    "VALIDATION_ERROR": (InvalidRequestError, 400),
    "OBJECT_NOT_FOUND": (NotFoundError, 404),
    "CONFLICT": (ConflictError, 409),
    "RATE_LIMITS": (RateLimitedError, 429),
}


async def upsert_many(driver: HubSpotDriver, obj: CrmObject, object_type: str, items: Sequence[UpsertItem]
                      ) -> list[UpsertOutcome]:
    if len(items) > driver.batch_size:
        raise InvalidRequestError(f"at most {driver.batch_size} records per batch", provider=driver.slug)
    outcomes: dict[int, UpsertOutcome] = {}
    updates = [{"id": it.external_id, "properties": dict(it.fields), "objectWriteTraceId": str(i)}
               for i, it in enumerate(items) if it.external_id is not None]
    if updates:
        outcomes |= await _write(driver, object_type, "update", updates)
    creates = [(i, it, provider_key(it.idempotency_key), request_fingerprint(obj, it.fields))
               for i, it in enumerate(items) if it.external_id is None]
    known = await _keyed(driver, object_type, list(dict.fromkeys(key for _, _, key, _ in creates)))
    fresh: list[dict[str, Any]] = []
    taken: set[str] = set()
    for i, it, key, fingerprint in creates:
        settled = settled_before_write(driver.slug, key, fingerprint, taken, known)
        if settled is not None:  # the key twice in this batch, or already written: no write for this item
            outcomes[i] = settled
            continue
        properties = dict(it.fields) | {driver._fingerprint_field: fingerprint}
        if obj is CrmObject.LEAD:
            properties.setdefault("lifecyclestage", "lead")
        fresh.append({"idProperty": driver._key_field, "id": key, "properties": properties,
                      "objectWriteTraceId": str(i)})
    if fresh:
        outcomes |= await _write(driver, object_type, "upsert", fresh)
    return [outcomes[i] for i in range(len(items))]


async def _keyed(driver: HubSpotDriver, object_type: str, keys: list[str]) -> dict[str, tuple[str, str | None]]:
    """key -> (record id, stored fingerprint) for the keys some live record holds (missing keys are a 207)."""
    if not keys:
        return {}
    names = [driver._key_field, driver._fingerprint_field]
    body = {"idProperty": driver._key_field, "inputs": [{"id": key} for key in keys], "properties": names}
    answer = driver._json("POST", await driver._request("POST", f"/crm/v3/objects/{object_type}/batch/read",
                                                         json=body))
    found: dict[str, tuple[str, str | None]] = {}
    for record in (answer or {}).get("results") or []:
        properties = record.get("properties") or {}
        if properties.get(driver._key_field):
            found[str(properties[driver._key_field])] = (str(record["id"]), properties.get(names[1]))
    return found


async def _write(driver: HubSpotDriver, object_type: str, verb: str, inputs: list[dict[str, Any]]
                 ) -> dict[int, UpsertOutcome]:
    """One batch call; outcomes by item index from `results` and (207) `errors`, matched by trace id."""
    response = await driver._request("POST", f"/crm/v3/objects/{object_type}/batch/{verb}", json={"inputs": inputs})
    answer = driver._json("POST", response) or {}
    outcomes: dict[int, UpsertOutcome] = {}
    for result in answer.get("results") or []:
        trace = result.get("objectWriteTraceId")
        if trace is not None:
            outcomes[int(trace)] = UpsertOutcome(external_id=str(result["id"]), created=bool(result.get("new")))
    for entry in answer.get("errors") or []:
        for trace in (entry.get("context") or {}).get("objectWriteTraceId") or []:
            outcomes[int(trace)] = UpsertOutcome(error=_item_error(driver, entry))
    for item in inputs:  # an input HubSpot said nothing about: unknown, so retryable rather than assumed done
        outcomes.setdefault(int(item["objectWriteTraceId"]), UpsertOutcome(error=UnavailableError(
            f"batch/{verb} answered without this item", provider=driver.slug, status_code=response.status_code)))
    return outcomes


def _item_error(driver: HubSpotDriver, entry: dict[str, Any]) -> DriverError:
    # Only the category (and sub-category) is kept: HubSpot's messages echo values, e.g. a clashing email.
    category = str(entry.get("category") or "VALIDATION_ERROR")
    cls, status = _CATEGORIES.get(category, (InvalidRequestError, 400))
    code = str(entry.get("subCategory") or category)
    return cls(f"batch item refused ({category})", provider=driver.slug, status_code=status, provider_code=code)
