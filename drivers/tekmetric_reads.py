"""Tekmetric reads shared by the driver's verbs: one shop's pages, one record, and how customers look flat.

Split from drivers/tekmetric.py to keep modules small; the provider's facts stay in the driver file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from drivers.base import CrmObject
from drivers.errors import NotFoundError
from drivers.hosted import HostedDriver, int_id
from drivers.text import batch_marker

_PATHS = {CrmObject.CUSTOMER: "customers", CrmObject.APPOINTMENT: "appointments", CrmObject.CASE: "repair-orders",
          CrmObject.NOTE: "customers"}
_MAX_PAGE = 100
_CREATE_MARK = re.compile(r"\[crm-sor create ([0-9a-f]{16}) ([0-9a-f]{16})\]")
_CUSTOMER_FIELDS = ("firstName", "lastName", "email", "phone", "notes", "okForMarketing", "address")


class TekmetricReads(HostedDriver):
    """Paging and single reads of one shop's records (the shop id is the tenant setting `shop_id`)."""

    @property
    def _shop(self) -> str:
        return str(self.config.get("shop_id", ""))

    async def _get(self, obj: CrmObject, external_id: str) -> dict[str, Any]:
        path = f"/api/v1/{_PATHS[obj]}/{int_id(external_id, self.slug)}"
        row: dict[str, Any] = await self._request_json("GET", path)
        if row.get("deletedDate"):
            raise NotFoundError(f"the {_PATHS[obj]} record was deleted", provider=self.slug, status_code=404)
        return row

    async def _pages(self, path: str, params: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        number = 0
        while len(rows) < limit:
            query = params | {"shop": self._shop, "size": min(_MAX_PAGE, max(limit - len(rows), 1)), "page": number}
            body = await self._request_json("GET", f"/api/v1/{path}", params=query)
            rows += body.get("content") or []
            if body.get("last", True) or not body.get("content"):
                break
            number += 1
        return rows[:limit]

    def _customer_body(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        body = dict(fields)
        if isinstance(body.get("email"), str):
            body["email"] = [body["email"]]
        phone = body.pop("phone", None)
        if isinstance(phone, str):
            body["phones"] = [{"number": phone, "type": "Mobile", "primary": True}]
        return body


def _flat_customer(row: dict[str, Any]) -> dict[str, Any]:
    """A customer as flat fields: the primary phone as `phone`, our create markers left out of `notes`."""
    phones = row.get("phone") or []
    primary = next((p for p in phones if p.get("primary")), phones[0] if phones else None)
    fields = {k: row.get(k) for k in _CUSTOMER_FIELDS}
    fields["phone"] = primary.get("number") if primary else None
    fields["phones"] = [p.get("number") for p in phones]
    notes = _CREATE_MARK.sub("", row.get("notes") or "").strip("\n")
    fields["notes"] = notes or None
    return fields


def _create_mark(key: str, fingerprint: str) -> str:
    return f"[crm-sor create {_digest(key)} {fingerprint[:16]}]"


def _digest(key: str) -> str:
    return batch_marker(key)[9:25]  # the same keyed digest the transcript markers use, never the key itself

