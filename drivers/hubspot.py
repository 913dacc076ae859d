"""HubSpot CRM driver (CRM v3 objects, search and properties APIs)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from pydantic import Field

from drivers import hubspot_batch, hubspot_match
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
    phone_formats,
)
from drivers.errors import ConflictError, InvalidRequestError, field_problems
from drivers.hubspot_webhooks import HubSpotVerifier
from drivers.idempotency import ensure_same_request, provider_key, request_fingerprint
from drivers.provider import CredentialForm, OAuthApp, RateLimit

_TYPES = {
    CrmObject.CUSTOMER: "contacts",
    CrmObject.LEAD: "contacts",  # HubSpot's inbound lead is a contact in the "lead" lifecycle stage
    CrmObject.DEAL: "deals",
    CrmObject.CASE: "tickets",
    CrmObject.NOTE: "notes",
}
_TYPE_IDS = {"contacts": "0-1", "deals": "0-3", "tickets": "0-5", "notes": "0-46"}
_MODIFIED = {"contacts": "lastmodifieddate"}  # every other object uses hs_lastmodifieddate
_NOTE_TO_CONTACT = 202
_MAX_PAGE = 200
# HubSpot's validation codes per property (VALIDATION_ERROR bodies) in the taxonomy's terms.
_FIELD_CODES = {"PROPERTY_DOESNT_EXIST": "unknown", "REQUIRED_PROPERTY": "required", "REQUIRED_FIELD": "required",
                "MISSING_REQUIRED_PROPERTY": "required", "READ_ONLY_VALUE": "read_only"}
ARCHIVE_PURGE_DAYS = 90  # archived records stay restorable (and readable with archived=true) this long
_LEAD_FILTER = {"propertyName": "lifecyclestage", "operator": "EQ", "value": "lead"}


def _secondly(response: httpx.Response) -> bool:
    """A 429 of the per-second policy (the search endpoints' own limit): `"policyName":"SECONDLY"`."""
    return '"SECONDLY"' in response.text


class HubSpotPrivateApp(CredentialForm):
    """A HubSpot private-app access token (sent as a static bearer; it does not expire)."""

    access_token: str = Field(min_length=8, max_length=512, pattern=r"^\S+$")

    def secret(self) -> dict[str, Any]:
        return {"auth": "bearer", "access_token": self.access_token}


class HubSpotDriver(BaseDriver):
    """HubSpot CRM.

    API version: CRM v3 (`/crm/v3/objects/{contacts,deals,tickets,notes}`, `/crm/v3/properties`).
    Auth: OAuth2 bearer (30-minute access tokens; code and refresh grants at `/oauth/v3/token`, every
    parameter form-encoded in the body: v1 is deprecated and retired on 2027-02-16, see
    developers.hubspot.com/changelog/v1-oauth-api-deprecation and /docs/api-reference/auth-oauth-v3/guide)
    or a private-app bearer token. Pagination: search `after` cursor from `paging.next.after`, at most 200 per page and
    10,000 per query. Rate limits: 429 with `X-HubSpot-RateLimit-{Max,Remaining,Interval-Milliseconds}`;
    `retry_after` comes from Retry-After when sent, else the interval window. Batch writes: `batch/update` and
    `batch/upsert` by the idempotency property, 100 inputs a call (drivers/hubspot_batch.py).

    Idempotent create reads by the unique property `crm_sor_idempotency_key` (`idProperty`, consistent,
    unlike the search index) and creates only when absent, storing the request fingerprint in
    `crm_sor_fingerprint`. Hard delete is GDPR delete and exists for contacts only.
    """

    slug = "hubspot"
    base_url = "https://api.hubapi.com"
    token_url = "https://api.hubapi.com/oauth/v3/token"
    # PKCE is off: the v3 token endpoint accepts a code_verifier, but HubSpot's install URL documents no
    # code_challenge parameter, and the client secret already authenticates the exchange.
    oauth = OAuthApp(
        authorize_url="https://app.hubspot.com/oauth/authorize",
        scopes=("oauth", "crm.objects.contacts.read", "crm.objects.contacts.write", "crm.objects.deals.read",
                "crm.objects.deals.write", "tickets"),
        pkce=False,
    )
    credential_form = HubSpotPrivateApp
    # developers.hubspot.com/docs/api/usage-details: public apps 110 requests / 10 s per account (private apps
    # on Free/Starter 100 / 10 s: the lower figure is used). The search endpoints have their own limit, documented
    # as 4 requests / s per token (changelog crm-search-api-rate-limit-increase; usage-details as quoted in
    # HubSpot/hubspot-api-nodejs#256); current pages may say 5 / s per account (unverified): the lower is used.
    webhook_verifier = HubSpotVerifier()  # signature checks and event normalization: drivers/hubspot_webhooks.py
    rate_limits = (
        RateLimit(100, 10.0, source="HubSpot API usage guidelines: burst limit per account"),
        RateLimit(4, 1.0, scope="search", source="HubSpot CRM search API: 4 requests per second per token"),
    )
    supported_objects: ClassVar[frozenset[CrmObject]] = frozenset(_TYPES)
    batch_size = 100  # inputs per batch/read|update|upsert call (HubSpot's documented maximum)
    match_size = 100  # customers per match_customers (batch/read by id and by email, then one phone search)
    leads_are_contacts: ClassVar[bool] = True  # contacts with lifecyclestage=lead; unique by email
    hard_delete_supported = True
    extra_fields_key: ClassVar[str | None] = "properties"
    keyed_objects: ClassVar[frozenset[CrmObject]] = frozenset(_TYPES)
    default_field_catalog: ClassVar[dict[str, str]] = {
        "customer.first_name": "firstname",
        "customer.last_name": "lastname",
        "customer.email": "email",
        "customer.phone": "phone",
        "customer.mobile_phone": "mobilephone",
        "customer.company": "company",
        "customer.city": "city",
        "lead.first_name": "firstname",
        "lead.last_name": "lastname",
        "lead.email": "email",
        "lead.phone": "phone",
        "lead.status": "hs_lead_status",
        "lead.stage": "lifecyclestage",
        "lead.message": "message",
        "deal.name": "dealname",
        "deal.amount": "amount",
        "deal.stage": "dealstage",
        "deal.pipeline": "pipeline",
        "deal.close_date": "closedate",
        "deal.description": "description",
        "case.subject": "subject",
        "case.description": "content",
        "case.pipeline": "hs_pipeline",
        "case.status": "hs_pipeline_stage",
        "case.priority": "hs_ticket_priority",
        "note.body": "hs_note_body",
        "note.timestamp": "hs_timestamp",
    }

    # ----- verbs -------------------------------------------------------------------------------

    async def get_record(self, object: CrmObject, external_id: str) -> Record:
        obj = self._require(object)
        body = await self._read(_TYPES[obj], external_id, self._properties(obj))
        return self._record(obj, body)

    async def search_records(self, object: CrmObject, query: str, limit: int = 20) -> list[Record]:
        obj = self._require(object)
        body: dict[str, Any] = {"query": query, "properties": self._properties(obj)}
        if obj is CrmObject.LEAD:
            body["filterGroups"] = [{"filters": [_LEAD_FILTER]}]
        return [self._record(obj, r) for r in await self._search(_TYPES[obj], body, limit)]

    async def list_recent(self, object: CrmObject, since: datetime, limit: int = 100) -> list[Record]:
        obj = self._require(object)
        modified = _MODIFIED.get(_TYPES[obj], "hs_lastmodifieddate")
        since_ms = str(int(since.astimezone(UTC).timestamp() * 1000))
        filters: list[dict[str, Any]] = [{"propertyName": modified, "operator": "GTE", "value": since_ms}]
        if obj is CrmObject.LEAD:
            filters.append(_LEAD_FILTER)
        body = {
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": modified, "direction": "ASCENDING"}],
            "properties": self._properties(obj),
        }
        return [self._record(obj, r) for r in await self._search(_TYPES[obj], body, limit)]

    async def create_record(self, object: CrmObject, fields: Mapping[str, Any], idempotency_key: str) -> CreateResult:
        obj = self._require(object)
        properties = dict(fields)
        if obj is CrmObject.LEAD:
            properties.setdefault("lifecyclestage", "lead")
        return await self._create(obj, properties, idempotency_key, request_fingerprint(obj, fields), [])

    async def update_record(self, object: CrmObject, external_id: str, fields: Mapping[str, Any]) -> Record | None:
        obj = self._require(object)
        path = f"/crm/v3/objects/{_TYPES[obj]}/{quote(external_id, safe='')}"
        body = await self._request_json("PATCH", path, json={"properties": dict(fields)})
        return self._record(obj, body)

    async def delete_record(self, object: CrmObject, external_id: str, *, hard: bool = False) -> DeleteResult:
        obj = self._require(object)
        object_type = _TYPES[obj]
        # DELETE answers 204 even for unknown ids; read first so a missing record is reported as not_found.
        await self._read(object_type, external_id, ["hs_object_id"])
        if hard and object_type == "contacts":
            await self._request("POST", "/crm/v3/objects/contacts/gdpr-delete", json={"objectId": external_id})
            return DeleteResult(deleted=True, hard_deleted=True)
        await self._request("DELETE", f"/crm/v3/objects/{object_type}/{quote(external_id, safe='')}")
        # Archived: still readable with `archived=true` and restorable until HubSpot purges it after 90 days.
        return DeleteResult(deleted=True, hard_deleted=False, purge_delay_days=ARCHIVE_PURGE_DAYS)

    async def describe_schema(self, object: CrmObject) -> list[FieldInfo]:
        obj = self._require(object)
        body = await self._request_json("GET", f"/crm/v3/properties/{_TYPES[obj]}")
        return [
            FieldInfo(
                name=p["name"],
                label=p.get("label") or p["name"],
                type=p.get("type") or "string",
                required=False,  # HubSpot's property metadata has no required flag
                read_only=bool((p.get("modificationMetadata") or {}).get("readOnlyValue") or p.get("calculated")),
                picklist_values=[str(o["value"]) for o in p.get("options") or [] if not o.get("hidden")],
                custom=not p.get("hubspotDefined", False),
            )
            for p in body.get("results", [])
        ]

    async def create_field(self, object: CrmObject, name: str, label: str, *, unique: bool) -> bool:
        """The properties API (`crm.schemas.*.write` scope); in the object's default `<type>information` group."""
        object_type = _TYPES[self._require(object)]
        body = {"name": name, "label": label, "type": "string", "fieldType": "text", "hasUniqueValue": unique,
                "groupName": f"{object_type[:-1]}information", "formField": False}
        await self._request("POST", f"/crm/v3/properties/{object_type}", json=body, accept=(409,))  # 409: exists
        return True

    async def append_note(
        self, customer_external_id: str, note_external_id: str | None, text: str, *, batch_key: str
    ) -> CreateResult:
        if note_external_id is None:
            first = appended(None, text, batch_key)
            properties = {"hs_note_body": first, "hs_timestamp": datetime.now(UTC).isoformat(timespec="milliseconds")}
            associations = [
                {
                    "to": {"id": customer_external_id},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": _NOTE_TO_CONTACT}],
                }
            ]
            fingerprint = request_fingerprint(CrmObject.NOTE, {"customer": customer_external_id, "text": text})
            return await self._create(CrmObject.NOTE, properties, batch_key, fingerprint, associations)
        note = await self._read("notes", note_external_id, ["hs_note_body"])
        body = appended(note["properties"].get("hs_note_body"), text, batch_key)
        if body is not None:
            path = f"/crm/v3/objects/notes/{quote(note_external_id, safe='')}"
            await self._request("PATCH", path, json={"properties": {"hs_note_body": body}})
        return CreateResult(
            external_id=note_external_id, record_url=self._url("notes", note_external_id), created=False
        )

    async def upsert_many(self, object: CrmObject, items: Sequence[UpsertItem]) -> list[UpsertOutcome]:
        """Up to 100 items: known ids in one `batch/update`, keys read in one `batch/read`, the rest in one
        `batch/upsert` by the idempotency property; partial failures (207) fail only their items."""
        obj = self._require(object)
        return await hubspot_batch.upsert_many(self, obj, _TYPES[obj], items)

    async def match_customers(self, items: Sequence[MatchItem]) -> dict[str, str | None]:
        """Up to 100 customers: hints and emails by `batch/read`, the phones left in one search
        (drivers/hubspot_match.py); a customer found by email is matched by it (email is unique for contacts)."""
        return await hubspot_match.match_customers(self, items)

    # ----- provider hooks ----------------------------------------------------------------------

    async def _probe(self) -> None:
        await self._request("GET", "/crm/v3/objects/contacts", params={"limit": 1})

    async def _find_customer_by_phone(self, e164: str) -> CustomerRecord | None:
        national = national_digits(e164)
        # One search, OR-ed filter groups (4 of the 5 allowed): HubSpot's calculated searchable numbers hold the
        # national digits whatever the formatting, and the stored strings are matched in every spelling a tenant
        # types (`IN`: +971501234567, 00971…, 050 123 4567, …). Country codes are checked below.
        spellings = phone_formats(e164)
        filters: list[dict[str, Any]] = [
            {"propertyName": f"hs_searchable_calculated_{kind}_number", "operator": "EQ", "value": national}
            for kind in ("phone", "mobile")
        ] + [{"propertyName": name, "operator": "IN", "values": spellings} for name in ("phone", "mobilephone")]
        groups = [{"filters": [one]} for one in filters]
        body = {"filterGroups": groups, "properties": self._properties(CrmObject.CUSTOMER), "limit": 10}
        for result in (await self._request_json("POST", "/crm/v3/objects/contacts/search", json=body))["results"]:
            props = result["properties"]
            if self._same_phone(e164, props.get("phone"), props.get("mobilephone")):
                return self._customer(result)
        return None

    async def _find_customer_by_email(self, email: str) -> CustomerRecord | None:
        body = await self._read("contacts", email, self._properties(CrmObject.CUSTOMER), "email", missing_ok=True)
        return self._customer(body) if body is not None else None

    async def _get_customer(self, external_id: str) -> CustomerRecord:
        return self._customer(await self._read("contacts", external_id, self._properties(CrmObject.CUSTOMER)))

    def _provider_code(self, response: httpx.Response) -> str | None:
        body = response.json()
        if not isinstance(body, dict):
            return None
        code = body.get("error") or body.get("category") or body.get("errorType")
        return str(code) if code else None

    def _field_problems(self, response: httpx.Response) -> dict[str, str]:
        """Names from a VALIDATION_ERROR: the legacy message embeds a JSON list of {"error", "name"}; the
        newer body lists `errors[]` with `context.propertyName`. Codes only, never the messages' values."""
        body = response.json()
        items: list[Any] = []
        message = body.get("message") if isinstance(body, dict) else None
        if isinstance(message, str) and ": [" in message:
            try:
                embedded = json.loads(message[message.index(": [") + 2:])
            except ValueError:
                embedded = []
            items += [(i.get("name"), i.get("error")) for i in embedded if isinstance(i, dict)]
        for item in (body.get("errors") or []) if isinstance(body, dict) else []:
            names = ((item.get("context") or {}).get("propertyName") or []) if isinstance(item, dict) else []
            items += [(name, item.get("code")) for name in names]
        return field_problems((name, _FIELD_CODES.get(str(code), "invalid")) for name, code in items)

    def time_zone_of(self, fields: Mapping[str, Any]) -> str | None:
        # `hs_timezone` spells America/New_York as `america_slash_new_york`.
        value = fields.get("hs_timezone")
        if isinstance(value, str) and "_slash_" in value:
            return "/".join(part.title() for part in value.split("_slash_"))
        return value if isinstance(value, str) and value else super().time_zone_of(fields)

    @classmethod
    def budget_scope(cls, request: httpx.Request) -> str:
        return "search" if request.url.path.endswith("/search") else "all"

    @classmethod
    def rate_limit_pause(cls, response: httpx.Response) -> float | None:
        """Pause when HubSpot says the rolling window is spent (Remaining 0), before it has to answer 429."""
        interval = response.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds", "")
        window = int(interval) / 1000 if interval.isdigit() else 10.0
        if response.status_code == 429:
            if "Retry-After" in response.headers:
                return super().rate_limit_pause(response)
            return 1.0 if _secondly(response) else window
        return window if response.headers.get("X-HubSpot-RateLimit-Remaining") == "0" else None

    def _retry_after(self, response: httpx.Response) -> timedelta | None:
        stated = super()._retry_after(response)
        if stated is not None:
            return stated
        if response.status_code == 429 and '"DAILY"' in response.text:
            return timedelta(hours=1)  # the daily window resets at the portal's midnight, which we don't know
        if response.status_code == 429 and _secondly(response):
            return timedelta(seconds=1)  # the search endpoints' per-second limit, not the 10-second window
        interval = response.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
        return timedelta(milliseconds=int(interval)) if interval and interval.isdigit() else None

    # ----- helpers -----------------------------------------------------------------------------

    async def _create(
        self,
        obj: CrmObject,
        properties: dict[str, Any],
        idempotency_key: str | None,
        fingerprint: str,
        associations: list[dict[str, Any]],
    ) -> CreateResult:
        object_type = _TYPES[obj]
        if idempotency_key is not None:
            idempotency_key = provider_key(idempotency_key)
            replay = await self._replay(object_type, idempotency_key, fingerprint)
            if replay is not None:
                return replay
            properties = properties | {self._key_field: idempotency_key, self._fingerprint_field: fingerprint}
        body = {"properties": properties, "associations": associations}
        try:
            created = await self._request_json("POST", f"/crm/v3/objects/{object_type}", json=body)
        except (ConflictError, InvalidRequestError):
            # A concurrent or lost-response create with the same key won the unique property: replay it.
            replay = await self._replay(object_type, idempotency_key, fingerprint) if idempotency_key else None
            if replay is None:
                raise
            return replay
        return CreateResult(external_id=created["id"], record_url=self._url(object_type, created["id"]), created=True)

    async def _replay(self, object_type: str, key: str, fingerprint: str) -> CreateResult | None:
        wanted = [self._fingerprint_field]
        found = await self._read(object_type, key, wanted, self._key_field, missing_ok=True)
        if found is None:
            return None
        ensure_same_request(self.slug, found["properties"].get(self._fingerprint_field), fingerprint, found["id"])
        return CreateResult(external_id=found["id"], record_url=self._url(object_type, found["id"]), created=False)

    async def _read(
        self,
        object_type: str,
        record_id: str,
        properties: list[str],
        id_property: str | None = None,
        *,
        missing_ok: bool = False,
    ) -> Any:
        params = {"properties": ",".join(properties)} | ({"idProperty": id_property} if id_property else {})
        path = f"/crm/v3/objects/{object_type}/{quote(record_id, safe='')}"
        response = await (self._request_or_none if missing_ok else self._request)("GET", path, params=params)
        return self._json("GET", response) if response is not None else None

    async def _search(self, object_type: str, body: dict[str, Any], limit: int) -> list[dict[str, Any]]:
        """Follow `paging.next.after` until `limit` results or the last page."""
        results: list[dict[str, Any]] = []
        after: str | None = None
        while len(results) < limit:
            page_body = body | {"limit": min(limit - len(results), _MAX_PAGE)}
            if after is not None:
                page_body["after"] = after
            page = await self._request_json("POST", f"/crm/v3/objects/{object_type}/search", json=page_body)
            results.extend(page.get("results", []))
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if after is None:
                break
        return results[:limit]

    def _properties(self, obj: CrmObject) -> list[str]:
        objects = {o for o, t in _TYPES.items() if t == _TYPES[obj]}
        names = [v for k, v in self.default_field_catalog.items() if CrmObject(k.split(".")[0]) in objects]
        extra = (self.config.get("properties") or {}).get(str(obj), [])
        return list(dict.fromkeys([*names, *extra]))

    def _url(self, object_type: str, record_id: str) -> str | None:
        portal = self.config.get("portal_id")
        if portal is None:
            return None
        return f"https://app.hubspot.com/contacts/{portal}/record/{_TYPE_IDS[object_type]}/{record_id}"

    def _record(self, obj: CrmObject, body: dict[str, Any]) -> Record:
        updated = body.get("updatedAt")
        return Record(
            object=obj,
            external_id=body["id"],
            fields=dict(body.get("properties") or {}),
            url=self._url(_TYPES[obj], body["id"]),
            updated_at=datetime.fromisoformat(updated.replace("Z", "+00:00")) if updated else None,
        )

    def _customer(self, body: dict[str, Any]) -> CustomerRecord:
        props = body.get("properties") or {}
        return CustomerRecord(
            external_id=body["id"],
            name=full_name(props.get("firstname"), props.get("lastname")),
            phone=props.get("phone") or props.get("mobilephone"),
            email=props.get("email"),
            fields=dict(props),
            url=self._url("contacts", body["id"]),
        )
