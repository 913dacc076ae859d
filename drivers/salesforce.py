"""Salesforce driver (REST API on the org's instance_url: sObjects, SOQL, SOSL, describe)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from drivers import salesforce_batch, salesforce_match
from drivers.base import (
    BaseDriver,
    CreateResult,
    CrmObject,
    CustomerRecord,
    DeleteResult,
    FieldInfo,
    MatchItem,
    Record,
    UpsertItem,
    UpsertOutcome,
    appended,
    full_name,
    national_digits,
)
from drivers.errors import (
    ConflictError,
    DriverError,
    InvalidRequestError,
    RateLimitedError,
    field_problems,
    parse_retry_after,
)
from drivers.idempotency import ensure_same_request, provider_key, request_fingerprint
from drivers.provider import OAuthApp, RateLimit
from drivers.salesforce_webhooks import SalesforceVerifier
from drivers.soql import soql_datetime, soql_quote, sosl_escape

_SOBJECTS = {
    CrmObject.CUSTOMER: "Contact",
    CrmObject.LEAD: "Lead",
    CrmObject.DEAL: "Opportunity",
    CrmObject.CASE: "Case",
    CrmObject.APPOINTMENT: "Event",
    CrmObject.NOTE: "Task",  # a transcript is a completed call Task on the Contact
}
_LIMIT_PAUSE_SECONDS = 300.0  # the quota is a rolling 24 h window and Salesforce gives no reset time
# Salesforce's field-level error codes in the taxonomy's terms (others with `fields` are "invalid").
_FIELD_CODES = {"REQUIRED_FIELD_MISSING": "required", "INVALID_FIELD": "unknown", "INVALID_FIELD_FOR_INSERT_UPDATE":
                "read_only", "INVALID_FIELD_FOR_INSERT": "read_only", "FIELD_NOT_UPDATEABLE": "read_only"}
RECYCLE_BIN_DAYS = 15  # deleted records stay in the Recycle Bin (queryAll, undelete) this long
_CONFLICT_CODES = {"DUPLICATE_VALUE", "DUPLICATES_DETECTED", "DUPLICATE_EXTERNAL_ID"}
_CUSTOMER_FIELDS = ["Id", "FirstName", "LastName", "Name", "Email", "Phone", "MobilePhone", "SystemModstamp"]


class SalesforceDriver(BaseDriver):
    """Salesforce.

    API version: REST `/services/data/vXX.X/` (config `api_version`, default v62.0) on the tenant's
    `instance_url`; login host login.salesforce.com, or test.salesforce.com for sandbox orgs
    (config `is_sandbox`). Auth: OAuth2 bearer; tokens carry no `expires_in`, so a 401 INVALID_SESSION_ID
    is the expiry signal and the auth flow refreshes once. Pagination: SOQL `nextRecordsUrl` until
    `done`, batch size via `Sforce-Query-Options`. Rate limits: the org's rolling 24-hour quota
    (`Sforce-Limit-Info: api-usage=n/max`); over it, 403 REQUEST_LIMIT_EXCEEDED maps to rate_limited with
    Retry-After when sent, else config `limit_retry_after_seconds` (default 300), and a spent allocation
    holds the tenant's whole budget off (`rate_limit_pause`). Batch writes: sObject Collections, 200 records.

    Idempotent create is external-id upsert on `CrmSorKey__c` (`PATCH /sobjects/X/CrmSorKey__c/{key}`),
    with the request fingerprint in `CrmSorFingerprint__c`. Delete moves records to the Recycle Bin
    (15 days); true hard delete needs the Bulk API's hardDelete permission, so hard_deleted is False.
    Customer lookup reads Contacts: SOSL `IN PHONE FIELDS` for phones, SOQL for email. SOSL terms need
    at least two characters (Salesforce SOSL FIND reference), checked here before any call.

    test_connection reads the version's resource list (`GET /services/data/vXX.X`): any API-enabled user may,
    unlike `/limits`, which needs "View Setup and Configuration" (Salesforce REST docs, Limits resource) that
    a least-privilege integration user lacks. Record ids may be given in 15 or 18 characters; answers carry 18.
    `describe_schema` reports picklist values, lookup targets (`referenceTo`) and the custom flag.
    """

    slug = "salesforce"
    token_url = "https://login.salesforce.com/services/oauth2/token"
    sandbox_token_url: ClassVar[str] = "https://test.salesforce.com/services/oauth2/token"
    oauth = OAuthApp(
        authorize_url="https://login.salesforce.com/services/oauth2/authorize",
        sandbox_authorize_url="https://test.salesforce.com/services/oauth2/authorize",
        scopes=("api", "refresh_token"),
        pkce=True,
    )
    # The org's rolling 24-hour allocation (Enterprise: 100,000 + 1,000 per licence); the tenant's own figure
    # comes back in Sforce-Limit-Info and corrects this default. Concurrency, not rate, limits the rest.
    webhook_verifier = SalesforceVerifier()  # signature checks and event normalization: drivers/salesforce_webhooks.py
    rate_limits = (RateLimit(100_000, 86_400.0, source="Salesforce API Request Limits and Allocations"),)
    batch_size = 200  # records per sObject Collections call
    match_size = 200  # customers per match_customers: SOQL `Id|Email|Phone|MobilePhone IN (…)`, as few as fit a URL
    supported_objects: ClassVar[frozenset[CrmObject]] = frozenset(_SOBJECTS)
    hard_delete_supported = False
    idempotency_field = "CrmSorKey__c"
    fingerprint_field = "CrmSorFingerprint__c"
    extra_fields_key: ClassVar[str | None] = "fields"
    keyed_objects: ClassVar[frozenset[CrmObject]] = frozenset(_SOBJECTS)
    default_field_catalog: ClassVar[dict[str, str]] = {
        "customer.first_name": "FirstName",
        "customer.last_name": "LastName",
        "customer.email": "Email",
        "customer.phone": "Phone",
        "customer.mobile_phone": "MobilePhone",
        "customer.title": "Title",
        "customer.city": "MailingCity",
        "lead.first_name": "FirstName",
        "lead.last_name": "LastName",
        "lead.email": "Email",
        "lead.phone": "Phone",
        "lead.company": "Company",
        "lead.status": "Status",
        "lead.source": "LeadSource",
        "lead.city": "City",
        "lead.message": "Description",
        "deal.name": "Name",
        "deal.amount": "Amount",
        "deal.stage": "StageName",
        "deal.close_date": "CloseDate",
        "deal.description": "Description",
        "case.subject": "Subject",
        "case.description": "Description",
        "case.status": "Status",
        "case.priority": "Priority",
        "case.origin": "Origin",
        "appointment.subject": "Subject",
        "appointment.start": "ActivityDateTime",
        "appointment.duration_minutes": "DurationInMinutes",
        "appointment.location": "Location",
        "appointment.description": "Description",
        "note.subject": "Subject",
        "note.body": "Description",
    }

    @classmethod
    def api_base_url(cls, config: Mapping[str, Any] | None = None) -> str:
        instance_url = (config or {}).get("instance_url")
        if not instance_url:
            raise InvalidRequestError("Salesforce needs the org's instance_url", provider=cls.slug)
        return str(instance_url).rstrip("/")

    @classmethod
    def oauth_token_url(cls, config: Mapping[str, Any] | None = None) -> str | None:
        config = config or {}
        if config.get("token_url"):
            return str(config["token_url"])
        return cls.sandbox_token_url if config.get("is_sandbox") else cls.token_url

    @property
    def _data(self) -> str:
        version = str(self.config.get("api_version", "v62.0"))
        return f"/services/data/{version if version.startswith('v') else 'v' + version}"

    # ----- verbs -------------------------------------------------------------------------------

    async def get_record(self, object: CrmObject, external_id: str) -> Record:
        obj = self._require(object)
        return self._record(obj, await self._request_json("GET", self._row_path(obj, external_id)))

    async def search_records(self, object: CrmObject, query: str, limit: int = 20) -> list[Record]:
        obj = self._require(object)
        if len(query.strip().replace("*", "").replace("?", "")) < 2:
            raise InvalidRequestError("search needs at least 2 characters (SOSL)", provider=self.slug)
        returning = f"{_SOBJECTS[obj]}({', '.join(self._select(obj))} LIMIT {int(limit)})"
        found = await self._sosl(f"FIND {{{sosl_escape(query)}}} IN ALL FIELDS RETURNING {returning}")
        return [self._record(obj, row) for row in found]

    async def list_recent(self, object: CrmObject, since: datetime, limit: int = 100) -> list[Record]:
        obj = self._require(object)
        soql = (
            f"SELECT {', '.join(self._select(obj))} FROM {_SOBJECTS[obj]} "
            f"WHERE SystemModstamp >= {soql_datetime(since)} ORDER BY SystemModstamp ASC LIMIT {int(limit)}"
        )
        headers = {"Sforce-Query-Options": f"batchSize={min(max(limit, 200), 2000)}"}
        page = await self._request_json("GET", f"{self._data}/query", params={"q": soql}, headers=headers)
        rows = list(page["records"])
        while not page.get("done", True) and page.get("nextRecordsUrl") and len(rows) < limit:
            page = await self._request_json("GET", page["nextRecordsUrl"], headers=headers)
            rows.extend(page["records"])
        return [self._record(obj, row) for row in rows[:limit]]

    async def create_record(self, object: CrmObject, fields: Mapping[str, Any], idempotency_key: str) -> CreateResult:
        obj = self._require(object)
        return await self._upsert(obj, dict(fields), idempotency_key, request_fingerprint(obj, fields))

    async def update_record(self, object: CrmObject, external_id: str, fields: Mapping[str, Any]) -> Record | None:
        obj = self._require(object)
        await self._request("PATCH", self._row_path(obj, external_id), json=dict(fields))
        return None  # 204 No Content: Salesforce does not echo the record

    async def delete_record(self, object: CrmObject, external_id: str, *, hard: bool = False) -> DeleteResult:
        obj = self._require(object)
        await self._request("DELETE", self._row_path(obj, external_id))
        # Recycle Bin, whatever `hard` asked: Salesforce empties it after 15 days.
        return DeleteResult(deleted=True, hard_deleted=False, purge_delay_days=RECYCLE_BIN_DAYS)

    async def create_field(self, object: CrmObject, name: str, label: str, *, unique: bool) -> bool:
        """Tooling API CustomField create ("Customize Application" permission). Task and Event share Activity's
        custom fields, so theirs are made on Activity."""
        sobject = _SOBJECTS[self._require(object)]
        sobject = "Activity" if sobject in ("Task", "Event") else sobject
        metadata = {"label": label, "type": "Text", "length": 255, "externalId": unique, "unique": unique,
                    "caseSensitive": False}
        response = await self._request("POST", f"{self._data}/tooling/sobjects/CustomField", accept=(400,),
                                       json={"FullName": f"{sobject}.{name}", "Metadata": metadata})
        if response.status_code == 400 and _codes(response) != {"DUPLICATE_DEVELOPER_NAME"}:
            raise self._error_for("POST", response)
        return True

    async def describe_schema(self, object: CrmObject) -> list[FieldInfo]:
        obj = self._require(object)
        body = await self._request_json("GET", f"{self._data}/sobjects/{_SOBJECTS[obj]}/describe")
        return [
            FieldInfo(
                name=f["name"], label=f.get("label") or f["name"], type=f.get("type") or "string",
                required=not f.get("nillable", True) and f.get("createable", False) and not f.get("defaultedOnCreate"),
                read_only=not f.get("createable", False) and not f.get("updateable", False),
                picklist_values=[str(p["value"]) for p in f.get("picklistValues") or [] if p.get("active", True)],
                reference_to=[str(target) for target in f.get("referenceTo") or []], custom=bool(f.get("custom")),
            )
            for f in body.get("fields", [])
        ]

    async def append_note(
        self, customer_external_id: str, note_external_id: str | None, text: str, *, batch_key: str
    ) -> CreateResult:
        if note_external_id is None:
            subject = str(self.config.get("note_subject", "Conversation transcript"))
            fields = {"WhoId": customer_external_id, "Subject": subject, "Description": appended(None, text, batch_key),
                      "Status": "Completed"}
            fingerprint = request_fingerprint(CrmObject.NOTE, {"customer": customer_external_id, "text": text})
            return await self._upsert(CrmObject.NOTE, fields, batch_key, fingerprint)
        path = self._row_path(CrmObject.NOTE, note_external_id)
        current = (await self._request_json("GET", path, params={"fields": "Description"})).get("Description")
        body = appended(current, text, batch_key)
        if body is not None:
            await self._request("PATCH", path, json={"Description": body})
        return CreateResult(external_id=note_external_id, record_url=self._url("Task", note_external_id), created=False)

    async def upsert_many(self, object: CrmObject, items: Sequence[UpsertItem]) -> list[UpsertOutcome]:
        """Up to 200 items: known ids in one sObject Collections update, keys read in one SOQL query, the rest
        in one sObject Collections upsert by `CrmSorKey__c` (`allOrNone: false`: a bad record fails alone)."""
        obj = self._require(object)
        return await salesforce_batch.upsert_many(self, obj, _SOBJECTS[obj], items)

    async def match_customers(self, items: Sequence[MatchItem]) -> dict[str, str | None]:
        """Up to 200 customers in SOQL queries packed to the URL limit (drivers/salesforce_match.py), with the
        single lookup's rules: phone first, then email."""
        return await salesforce_match.match_customers(self, items)

    # ----- provider hooks ----------------------------------------------------------------------

    async def _probe(self) -> None:
        await self._request("GET", self._data)  # the version's resources: no "View Setup" needed, unlike /limits

    async def _find_customer_by_phone(self, e164: str) -> CustomerRecord | None:
        national = national_digits(e164)
        # SOSL phone search ignores the stored formatting; the country code is checked below.
        returning = f"Contact({', '.join(_CUSTOMER_FIELDS)} LIMIT 10)"
        for row in await self._sosl(f"FIND {{{sosl_escape(national)}}} IN PHONE FIELDS RETURNING {returning}"):
            if self._same_phone(e164, row.get("Phone"), row.get("MobilePhone")):
                return self._customer(row)
        return None

    async def _find_customer_by_email(self, email: str) -> CustomerRecord | None:
        soql = (
            f"SELECT {', '.join(_CUSTOMER_FIELDS)} FROM Contact WHERE Email = {soql_quote(email)} "
            "ORDER BY LastModifiedDate DESC LIMIT 1"
        )
        rows = (await self._request_json("GET", f"{self._data}/query", params={"q": soql}))["records"]
        return self._customer(rows[0]) if rows else None

    async def _get_customer(self, external_id: str) -> CustomerRecord:
        return self._customer(await self._request_json("GET", self._row_path(CrmObject.CUSTOMER, external_id)))

    def _provider_code(self, response: httpx.Response) -> str | None:
        body = response.json()
        if isinstance(body, list) and body and isinstance(body[0], dict):
            code = body[0].get("errorCode")
        elif isinstance(body, dict):
            code = body.get("errorCode") or body.get("error")
        else:
            code = None
        return str(code) if code else None

    def _field_problems(self, response: httpx.Response) -> dict[str, str]:
        """`[{"errorCode": "REQUIRED_FIELD_MISSING", "fields": ["LastName"]}, …]`: the names in `fields`."""
        body = response.json()
        errors = body if isinstance(body, list) else [body]
        return field_problems((name, _FIELD_CODES.get(str(e.get("errorCode")), "invalid"))
                              for e in errors if isinstance(e, dict) for name in (e.get("fields") or []))

    def _classify(self, response: httpx.Response, provider_code: str | None) -> type[DriverError] | None:
        if provider_code == "REQUEST_LIMIT_EXCEEDED":
            return RateLimitedError  # Salesforce throttles with 403, not 429
        if provider_code in salesforce_batch.CONFLICT_CODES:
            return ConflictError
        return None

    @classmethod
    def rate_limit_pause(cls, response: httpx.Response) -> float | None:
        """Hold the tenant's whole budget off once the org's daily allocation is spent: `Sforce-Limit-Info`
        (on every answer, the 403 REQUEST_LIMIT_EXCEEDED too) shows api-usage at its maximum."""
        usage = _api_usage(response.headers.get("Sforce-Limit-Info"))
        if usage is None or usage[0] < usage[1]:
            return None
        after = parse_retry_after(response.headers.get("Retry-After"))
        return after.total_seconds() if after is not None else _LIMIT_PAUSE_SECONDS

    def _retry_after(self, response: httpx.Response) -> timedelta | None:
        stated = super()._retry_after(response)
        if stated is None and response.status_code == 403:
            return timedelta(seconds=float(self.config.get("limit_retry_after_seconds", _LIMIT_PAUSE_SECONDS)))
        return stated

    # ----- helpers -----------------------------------------------------------------------------

    async def _upsert(self, obj: CrmObject, fields: dict[str, Any], key: str, fingerprint: str) -> CreateResult:
        sobject = _SOBJECTS[obj]
        path = f"{self._data}/sobjects/{sobject}/{self._key_field}/{quote(provider_key(key), safe='')}"
        # Read first: an upsert on an existing key would overwrite it before we could detect a conflict.
        found = await self._request_or_none("GET", path, params={"fields": f"Id,{self._fingerprint_field}"})
        if found is not None:
            existing = self._json("GET", self._single(found))
            ensure_same_request(self.slug, existing.get(self._fingerprint_field), fingerprint, existing["Id"])
            return CreateResult(
                external_id=existing["Id"], record_url=self._url(sobject, existing["Id"]), created=False
            )
        response = await self._request("PATCH", path, json=fields | {self._fingerprint_field: fingerprint})
        response = self._single(response)
        body = self._json("PATCH", response) or {}
        if not body.get("id"):  # pre-v46 orgs answer an update with 204 and no body
            body = {"id": (await self._request_json("GET", path, params={"fields": "Id"}))["Id"], "created": False}
        created = bool(body.get("created", response.status_code == 201))
        return CreateResult(external_id=body["id"], record_url=self._url(sobject, body["id"]), created=created)

    def _single(self, response: httpx.Response) -> httpx.Response:
        if response.status_code == 300:  # the external id matches several records: an operator must dedupe
            raise ConflictError("external id matches several records", provider=self.slug, status_code=300)
        return response

    async def _sosl(self, search: str) -> list[dict[str, Any]]:
        body = await self._request_json("GET", f"{self._data}/search", params={"q": search})
        return list(body.get("searchRecords", []) if isinstance(body, dict) else body)

    def _row_path(self, obj: CrmObject, record_id: str) -> str:
        return f"{self._data}/sobjects/{_SOBJECTS[obj]}/{quote(record_id, safe='')}"

    def _select(self, obj: CrmObject) -> list[str]:
        names = [v for k, v in self.default_field_catalog.items() if k.split(".")[0] == obj.value]
        extra = (self.config.get("fields") or {}).get(str(obj), [])
        return list(dict.fromkeys(["Id", *names, *extra, "SystemModstamp"]))

    def _url(self, sobject: str, record_id: str) -> str:
        base = str(self.config.get("instance_url") or self.client.base_url).rstrip("/")
        return f"{base}/lightning/r/{sobject}/{record_id}/view"

    def _record(self, obj: CrmObject, row: dict[str, Any]) -> Record:
        fields = {k: v for k, v in row.items() if k != "attributes"}
        stamp = fields.get("SystemModstamp")
        return Record(
            object=obj,
            external_id=fields["Id"],
            fields=fields,
            url=self._url(_SOBJECTS[obj], fields["Id"]),
            updated_at=_parse_time(stamp) if stamp else None,
        )

    def _customer(self, row: dict[str, Any]) -> CustomerRecord:
        return CustomerRecord(
            external_id=row["Id"],
            name=row.get("Name") or full_name(row.get("FirstName"), row.get("LastName")),
            phone=row.get("Phone") or row.get("MobilePhone"),
            email=row.get("Email"),
            fields={k: v for k, v in row.items() if k != "attributes"},
            url=self._url("Contact", row["Id"]),
        )


def _api_usage(header: str | None) -> tuple[int, int] | None:
    """(used, allowed) from `Sforce-Limit-Info: api-usage=10018/100000; api-bursts=1/750`."""
    for part in (header or "").split(";"):
        name, _, value = part.strip().partition("=")
        used, _, allowed = value.partition("/")
        if name == "api-usage" and used.isdigit() and allowed.isdigit():
            return int(used), int(allowed)
    return None


def _parse_time(value: str) -> datetime:
    # Salesforce writes "2024-05-01T12:00:00.000+0000": fromisoformat needs the colon in the offset.
    if len(value) > 5 and value[-5] in "+-" and value[-3] != ":":
        value = f"{value[:-2]}:{value[-2:]}"
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _codes(response: httpx.Response) -> set[str]:
    try:
        body = response.json()
    except ValueError:
        return set()
    return {str(e.get("errorCode")) for e in body if isinstance(e, dict)} if isinstance(body, list) else set()
