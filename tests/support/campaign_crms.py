"""CRM sandbox checks for the campaign ledger beyond HubSpot's (campaign_ledger.HubSpotChecks).

Tekmetric has no idempotency key or custom field: the driver recognises its own create by a marker line in the
customer's `notes` holding a keyed digest of our idempotency key (drivers/tekmetric_reads.py), so that digest is
what two CRM records of one row would share. Transcripts are appended to the customer's `notes` as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drivers.tekmetric_reads import _CREATE_MARK
from sandboxes.tekmetric import TekmetricState
from tests.support.campaign_ledger import Expected, Ledger, check_customers, check_transcripts, count_duplicates


@dataclass
class TekmetricChecks:
    crm: TekmetricState

    def _customer(self, external_id: str) -> dict[str, Any] | None:
        row = self.crm.customers.get(int(external_id)) if external_id.isdigit() else None
        return None if row is None or row["deletedDate"] else row

    def records(self, ledger: Ledger, rows: dict[str, dict[str, Any]], expected: Expected) -> None:
        check_customers(ledger, rows, expected,
                        lambda i: None if (c := self._customer(i)) is None else str(c.get("lastName")))
        check_transcripts(ledger, rows, expected, lambda i: str((self._customer(i) or {}).get("notes") or ""))

    def duplicates(self, ledger: Ledger) -> None:
        live = [c for c in self.crm.customers.values() if not c["deletedDate"]]
        keys = ({m.group(1) for m in _CREATE_MARK.finditer(c["notes"] or "")} for c in live)  # per customer
        count_duplicates(ledger, "customers create key", (key for found in keys for key in found))
        count_duplicates(ledger, "customers email", (c.get("email") for c in live))
