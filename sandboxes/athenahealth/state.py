"""athenahealth sandbox state: one practice's patients and appointment slots, and a client-credentials issuer
with the token endpoint's per-minute limit.

Wire facts from ../shared/reference (athenahealth section) and the recorded answers in
../shared/provider-specs/athenahealth/go-athenahealth-fixtures: ids and most values are strings, dates
`MM/DD/YYYY`, phones stored as digits, lists as `{"patients": [...], "totalcount": n, "next": "/v1/..."}`, a
patient create answering `[{"patientid": "..."}]` and returning the best match instead of a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from itertools import count
from typing import Any

from sandboxes.common import SandboxState, TokenIssuer

PRACTICE_ID = "195900"  # athenahealth's shared preview practice
TOKEN_LIMIT = {"preview": 5, "production": 50}  # token calls per minute


class ClientCredentialsIssuer(TokenIssuer):
    """Access tokens for a client id/secret pair; "revoking" disables the client (the app was deleted)."""

    def __init__(self, ttl_seconds: int) -> None:
        super().__init__("athena", ttl_seconds)
        self.disabled = False

    def revoke_refresh(self) -> None:
        self.disabled = True


def stamp(moment: datetime) -> str:
    return moment.strftime("%m/%d/%Y %H:%M:%S")


def digits(value: Any) -> str:
    return "".join(ch for ch in str(value or "") if ch.isdigit())


@dataclass
class AthenaState(SandboxState):
    practice_id: str = PRACTICE_ID
    environment: str = "preview"
    patients: dict[str, dict[str, Any]] = field(default_factory=dict)
    appointments: dict[str, dict[str, Any]] = field(default_factory=dict)
    token_calls: list[float] = field(default_factory=list)
    _ids: count[int] = field(default_factory=lambda: count(60184))
    _slots: count[int] = field(default_factory=lambda: count(2204083))

    def add_patient(self, values: dict[str, Any]) -> dict[str, Any]:
        """Register as the API would (also used by tests to seed patients without API calls)."""
        row: dict[str, Any] = {"patientid": str(next(self._ids)), "status": "active", "customfields": []} | values
        for phone in ("homephone", "mobilephone", "workphone"):
            if row.get(phone):
                row[phone] = digits(row[phone])[-10:]  # athenaNet keeps the 10 national digits
        self.patients[row["patientid"]] = row
        self.touch(row)
        return row

    def add_slot(self, date: str = "12/01/2026", starttime: str = "09:00", **extra: Any) -> dict[str, Any]:
        """An open appointment slot (status "o"), as a practice's schedule template creates them."""
        row: dict[str, Any] = {"appointmentid": str(next(self._slots)), "date": date, "starttime": starttime,
                               "departmentid": "1", "appointmentstatus": "o", "duration": 30,
                               "appointmenttypeid": "82", "appointmenttype": "Consult", "providerid": "71",
                                "patientappointmenttypename": "Consult", "chargeentrynotrequired": False} | extra
        self.appointments[row["appointmentid"]] = row
        self.touch(row)
        return row

    def touch(self, row: dict[str, Any]) -> None:
        moment = self.now()
        row["lastupdated" if "patientid" in row and "appointmentid" not in row else "lastmodified"] = stamp(moment)
        row["_modified"] = moment

    def token_allowed(self) -> bool:
        """Count one token call; False when the minute's budget is spent (blocked for the rest of it)."""
        now = self.tokens.clock()
        self.token_calls = [t for t in self.token_calls if now - t < 60.0]
        if len(self.token_calls) >= TOKEN_LIMIT[self.environment]:
            return False
        self.token_calls.append(now)
        return True
