"""Request fingerprints for idempotent creates.

The same fingerprint function feeds two places: drivers store it on the upserted record (so a reused key
with different fields is detectable at the provider), and the activities layer stores it in the local
idempotency ledger (tenant, key -> external id, fingerprint).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from drivers.errors import ConflictError, InvalidRequestError
from drivers.models import UpsertOutcome

__all__ = ["ensure_same_request", "provider_key", "request_fingerprint"]

# Keys made of these characters travel safely in a URL path segment (Salesforce external-id upsert,
# HubSpot idProperty reads); anything else, e.g. "/", is rejected or mis-routed by the providers.
_PATH_SAFE_KEY = re.compile(r"[A-Za-z0-9_.:@-]{1,80}")


def _canonical(value: Any) -> Any:
    # Explicit conversions rather than json's default=str, so 1 and "1" stay distinct fingerprints.
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, Enum):
        return _canonical(value.value)
    if isinstance(value, datetime | date):
        return {"$date": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    return value


def request_fingerprint(object: str, fields: Mapping[str, Any]) -> str:
    """sha256 hex of the canonical JSON of (object, fields); key order and whitespace never matter."""
    payload = {"object": str(object), "fields": _canonical(fields)}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def ensure_same_request(provider: str, stored_fingerprint: str | None, fingerprint: str,
                        existing_id: str | None = None) -> None:
    """Raise ConflictError (naming `existing_id`, the record holding the key) when an idempotency key comes
    back with a different request.

    A record upserted before fingerprints existed has none stored; it is accepted rather than blocked.
    """
    if stored_fingerprint and stored_fingerprint != fingerprint:
        raise ConflictError("idempotency key reused with different fields", provider=provider,
                            provider_code="IDEMPOTENCY_KEY_REUSED", existing_id=existing_id)


def settled_before_write(provider: str, key: str, fingerprint: str, taken: set[str],
                         known: Mapping[str, tuple[str, str | None]]) -> UpsertOutcome | None:
    """A batch item's outcome when it needs no write: its key named twice in one batch (providers refuse that:
    this item fails, not the others), or already written (the same request again, else a conflict naming the
    record). None: write it. `taken` collects the batch's keys; `known` is key -> (record id, stored fingerprint)."""
    if key in taken:
        return UpsertOutcome(error=InvalidRequestError("idempotency key twice in one batch", provider=provider,
                                                       provider_code="DUPLICATE_KEY_IN_BATCH"))
    taken.add(key)
    if key not in known:
        return None
    record_id, stored = known[key]
    try:
        ensure_same_request(provider, stored, fingerprint, record_id)
    except ConflictError as exc:
        return UpsertOutcome(error=exc)
    return UpsertOutcome(external_id=record_id, created=False)


def provider_key(idempotency_key: str) -> str:
    """The value stored in the provider's unique key field: the key itself when path-safe, else its hash."""
    if _PATH_SAFE_KEY.fullmatch(idempotency_key):
        return idempotency_key
    return "sha256-" + hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()
