"""Zoho CRM sandbox state: one org's modules per data centre host, the Recycle Bin, DC-bound tokens.

Wire facts from ../shared/reference (Zoho section) and Zoho's OpenAPI v8 files in ../shared/provider-specs/zoho:
tokens belong to the data centre whose accounts server issued them (another DC's API answers INVALID_TOKEN),
refresh grants never rotate the refresh token and are throttled per refresh token (10 per 10 minutes),
records carry 19-digit string ids and `Modified_Time` with a UTC offset, delete moves to the Recycle Bin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from itertools import count
from typing import Any

from sandboxes.common import SandboxState

# Host -> data centre, for accounts servers and API hosts alike; an unknown host (loopback) is `default_dc`.
HOSTS: dict[str, str] = {}
for _dc, _suffix, _accounts in (("us", "com", "zoho.com"), ("eu", "eu", "zoho.eu"), ("in", "in", "zoho.in"),
                                ("au", "com.au", "zoho.com.au"), ("jp", "jp", "zoho.jp"),
                                ("cn", "com.cn", "zoho.com.cn"), ("ca", "ca", "zohocloud.ca"),
                                ("sa", "sa", "zoho.sa"), ("ae", "ae", "zoho.ae"), ("uk", "uk", "zoho.uk")):
    HOSTS[f"www.zohoapis.{_suffix}"] = HOSTS[f"zohoapis.{_suffix}"] = HOSTS[f"accounts.{_accounts}"] = _dc
ACCOUNTS_OF = {dc: f"https://{host}" for host, dc in HOSTS.items() if host.startswith("accounts.")}
API_OF = {dc: f"https://{host}" for host, dc in HOSTS.items() if host.startswith("www.")}

MODULES = ("Leads", "Contacts", "Deals", "Cases", "Notes")
KEY_FIELD, FINGERPRINT_FIELD = "Crm_Sor_Key", "Crm_Sor_Fingerprint"
# (api_name, label, data_type, mandatory, read_only) per module; the two Crm_Sor_* fields are what our installer
# adds (the key one unique and usable as an external id).
_PERSON = [("First_Name", "First Name", "text", False, False), ("Last_Name", "Last Name", "text", True, False),
           ("Email", "Email", "email", False, False), ("Phone", "Phone", "phone", False, False),
           ("Mobile", "Mobile", "phone", False, False), ("Description", "Description", "textarea", False, False)]
FIELDS: dict[str, list[tuple[str, str, str, bool, bool]]] = {
    "Contacts": [*_PERSON, ("Title", "Title", "text", False, False),
                 ("Mailing_City", "Mailing City", "text", False, False)],
    "Leads": [*_PERSON, ("Company", "Company", "text", True, False), ("Lead_Status", "Lead Status", "picklist",
                                                                      False, False),
              ("Lead_Source", "Lead Source", "picklist", False, False), ("City", "City", "text", False, False)],
    "Deals": [("Deal_Name", "Deal Name", "text", True, False), ("Stage", "Stage", "picklist", True, False),
              ("Amount", "Amount", "currency", False, False), ("Closing_Date", "Closing Date", "date", False, False),
              ("Description", "Description", "textarea", False, False)],
    "Cases": [("Subject", "Subject", "text", True, False), ("Status", "Status", "picklist", True, False),
              ("Priority", "Priority", "picklist", False, False), ("Case_Origin", "Case Origin", "picklist", False,
                                                                   False),
              ("Description", "Description", "textarea", False, False)],
    "Notes": [("Note_Title", "Note Title", "text", False, False), ("Note_Content", "Note Content", "textarea",
                                                                   False, False),
              ("Parent_Id", "Parent ID", "lookup", True, False)],
}
_SYSTEM = [("id", "Record Id", "bigint", False, True), ("Created_Time", "Created Time", "datetime", False, True),
           ("Modified_Time", "Modified Time", "datetime", False, True),
           ("Owner", "Owner", "ownerlookup", False, False)]
_KEYS = [(KEY_FIELD, "CRM-SoR Key", "text", False, False),
         (FINGERPRINT_FIELD, "CRM-SoR Fingerprint", "text", False, False)]
# The email fits users.json's (generated) pattern for Minified_User.email.
OWNER = {"name": "Sandbox Admin", "id": "5725767000000411001", "email": "sandboxadmin@crmsb.com"}
DEFAULTS = {"Deals": {"Stage": "Qualification"}, "Cases": {"Status": "New"}}


def fields_of(module: str) -> list[tuple[str, str, str, bool, bool]]:
    return [*FIELDS[module], *_SYSTEM, *([] if module == "Notes" else _KEYS)]


def zoho_time(moment: datetime) -> str:
    """Zoho's timestamps: ISO 8601 to the second with the user's offset (UTC here)."""
    return moment.isoformat(timespec="seconds")


@dataclass
class ZohoState(SandboxState):
    """The org. `user_dc` is where the consenting user's account lives (the authorize redirect names it)."""

    user_dc: str = "us"
    default_dc: str = "us"
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    recycle_bin: dict[str, str] = field(default_factory=dict)  # record id -> module
    token_dc: dict[str, str] = field(default_factory=dict)  # access/refresh token or grant code -> data centre
    grants: dict[str, list[float]] = field(default_factory=dict)  # refresh token -> access tokens issued (clock)
    cursors: dict[str, tuple[str, int]] = field(default_factory=dict)  # page token -> (query signature, offset)
    tokens_per_window: int = 10  # access tokens per refresh token per `token_window_seconds`
    index_delay_seconds: float = 0.0  # search misses records younger than this (Zoho's indexing delay)
    token_window_seconds: float = 600.0
    _ids: count[int] = field(default_factory=lambda: count(524157))
    # False: a fresh org without the two custom fields our installer creates (POST /settings/fields).
    installed: bool = True
    missing_fields: set[tuple[str, str]] = field(default_factory=set)  # (module, api_name) not created yet
    custom_fields: dict[str, list[tuple[str, str, str, bool, bool]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.installed:
            self.missing_fields |= {(m, n) for m in MODULES if m != "Notes" for n, *_ in _KEYS}

    def fields(self, module: str) -> list[tuple[str, str, str, bool, bool]]:
        """The module's fields in this org: the modelled ones less uncreated fields, plus created ones."""
        return [f for f in fields_of(module) if (module, f[0]) not in self.missing_fields
                ] + self.custom_fields.get(module, [])

    def dc_of(self, host: str | None) -> str:
        return HOSTS.get((host or "").split(":")[0].lower(), self.default_dc)

    def add(self, module: str, values: dict[str, Any]) -> dict[str, Any]:
        """Insert as the API would (also used by tests to seed records without API calls)."""
        moment = self.now()
        row: dict[str, Any] = {"id": f"5725767{next(self._ids):012d}", "Owner": dict(OWNER),
                               "Created_Time": zoho_time(moment), "Created_By": dict(OWNER)}
        row |= DEFAULTS.get(module, {}) | values | {"_indexed_at": self.tokens.clock() + self.index_delay_seconds}
        self.records.setdefault(module, {})[row["id"]] = row
        self.touch(row, moment)
        return row

    def touch(self, row: dict[str, Any], moment: datetime | None = None) -> None:
        moment = moment or self.now()
        row["Modified_Time"], row["Modified_By"] = zoho_time(moment), dict(OWNER)
        row["_modified"] = moment  # full precision for ordering; never sent

    def live(self, module: str) -> list[dict[str, Any]]:
        return [r for r in self.records.get(module, {}).values() if r["id"] not in self.recycle_bin]

    def indexed(self, module: str) -> list[dict[str, Any]]:
        """What the search index holds: live records older than the indexing delay."""
        now = self.tokens.clock()
        return [r for r in self.live(module) if r["_indexed_at"] <= now]

    def find(self, module: str, value: str, by: str = "id") -> dict[str, Any] | None:
        return next((r for r in self.live(module) if str(r.get(by)) == value), None)

    def throttled(self, refresh_token: str) -> bool:
        """Count one access token for this refresh token; True when over the accounts server's limit."""
        now = self.tokens.clock()
        issued = [t for t in self.grants.get(refresh_token, []) if now - t < self.token_window_seconds]
        if len(issued) >= self.tokens_per_window:
            self.grants[refresh_token] = issued
            return True
        self.grants[refresh_token] = [*issued, now]
        return False
