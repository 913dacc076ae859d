"""Tekmetric driver (auto repair shops): customers, appointments and repair orders of one shop."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

import httpx
from pydantic import Field

from drivers.auth import TokenSet
from drivers.base import (
    CreateResult,
    CrmObject,
    CustomerRecord,
    DeleteResult,
    FieldInfo,
    Record,
    appended,
    full_name,
    national_digits,
)
from drivers.errors import AuthError, DeleteUnsupportedError, InvalidRequestError, UnavailableError
from drivers.hosted import int_id, iso_seconds, json_object, key_reused
from drivers.idempotency import request_fingerprint
from drivers.provider import CredentialForm, RateLimit
from drivers.tekmetric_reads import (
    _CREATE_MARK,
    _MAX_PAGE,
    _PATHS,
    TekmetricReads,
    _create_mark,
    _digest,
    _flat_customer,
)

HOSTS = {"production": "https://shop.tekmetric.com", "sandbox": "https://sandbox.tekmetric.com"}
_MAX_PAGES = 20  # list_recent sorts client-side (Tekmetric sorts by name/email only): bound the scan


class TekmetricCredentials(CredentialForm):
    """A Tekmetric API application's client id and secret, and the shop the tenant is."""

    client_id: str = Field(min_length=1, max_length=256, pattern=r"^\S+$")
    client_secret: str = Field(min_length=1, max_length=512)
    shop_id: int = Field(gt=0)
    environment: Literal["production", "sandbox"] = "production"

    def secret(self) -> dict[str, Any]:
        return {"auth": "token", "client_id": self.client_id, "client_secret": self.client_secret}

    def settings(self) -> dict[str, Any]:
        return {"shop_id": self.shop_id, "environment": self.environment}


class TekmetricDriver(TekmetricReads):
    """Tekmetric.

    API version: v1 (`/api/v1/...`) on `shop.tekmetric.com` (production) or `sandbox.tekmetric.com` (tenant
    setting `environment`). Auth: OAuth2 client credentials (`POST /api/v1/oauth/token`, HTTP Basic), a bearer
    token valid until revoked; its `scope` lists the shop ids it may read. Pagination: Spring Data pages
    (0-based `page`, `size` ≤ 100, stop on `last`). Rate limits: 600 requests/min (300 on the sandbox host);
    a 429 has an empty body and no documented Retry-After, so `retry_after` is the one-minute window.

    Objects: customers, appointments, repair orders (CASE: read, search and patch only: the API cannot create
    them) and the customer's `notes` field as the home of transcripts (NOTE, id = the customer id). Tekmetric
    has no customer delete: `DeleteUnsupportedError`, so erasure records a divergence for the operator.
    Idempotent create: Tekmetric offers no idempotency key and no custom field, so a create searches the shop
    for the request's email / phone / name first and recognises its own earlier create by a marker line in
    `notes` holding digests of the key and of the request.
    """

    slug = "tekmetric"
    hosts = HOSTS
    token_path = "/api/v1/oauth/token"
    base_url = HOSTS["production"]
    token_url = HOSTS["production"] + "/api/v1/oauth/token"
    credential_form = TekmetricCredentials
    rate_limits = (RateLimit(600, 60.0, source="Tekmetric API docs, Rate Limiting: 600 requests per minute "
                                                 "(sandbox accounts 300 per minute)"),)
    sandbox_rate_limits = (RateLimit(300, 60.0, source="Tekmetric API docs: sandbox accounts 300 calls per minute"),)
    supported_objects: ClassVar[frozenset[CrmObject]] = frozenset(_PATHS)
    deletable_objects: ClassVar[frozenset[CrmObject] | None] = frozenset({CrmObject.APPOINTMENT})
    default_field_catalog: ClassVar[dict[str, str]] = {
        "customer.first_name": "firstName",
        "customer.last_name": "lastName",
        "customer.email": "email",
        "customer.phone": "phone",
        "customer.marketing_ok": "okForMarketing",
        # The lifecycle's appointment keys (as Salesforce's) where Tekmetric has the field.
        "appointment.subject": "title",
        "appointment.start": "startTime",
        "appointment.end": "endTime",
        "appointment.description": "description",
        "appointment.customer_id": "customerId",
        "case.key_tag": "keyTag",
        "case.miles_in": "milesIn",
        "case.status": "repairOrderStatus",
        "note.body": "notes",
    }

    @classmethod
    async def grant_token(cls, http: httpx.AsyncClient, secret: Mapping[str, Any], config: Mapping[str, Any],
                          client: tuple[str, str] | None) -> TokenSet:
        """The client-credentials grant with HTTP Basic client authentication, as Tekmetric documents."""
        basic = base64.b64encode(f"{secret.get('client_id', '')}:{secret.get('client_secret', '')}".encode()).decode()
        try:
            response = await http.post(str(cls.oauth_token_url(config)), content="grant_type=client_credentials",
                                       headers={"Authorization": f"Basic {basic}", "Content-Type":
                                                "application/x-www-form-urlencoded;charset=UTF-8"})
        except httpx.TransportError as exc:
            raise UnavailableError(f"token endpoint unreachable ({type(exc).__name__})", provider=cls.slug) from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise UnavailableError("token endpoint failed", provider=cls.slug, status_code=response.status_code)
        body = json_object(response)
        if response.status_code != 200 or "access_token" not in body:
            raise AuthError("client credentials refused", provider=cls.slug, status_code=response.status_code,
                            provider_code=str(body.get("error") or "") or None)
        expires = body.get("expires_in")  # documented as never expiring; honoured if ever sent
        return TokenSet(access_token=str(body["access_token"]), refresh_token="",
                        expires_in=int(expires) if expires is not None else None)

    # ----- verbs -------------------------------------------------------------------------------

    async def get_record(self, object: CrmObject, external_id: str) -> Record:
        obj = self._require(object)
        return self._record(obj, await self._get(obj, external_id))

    async def search_records(self, object: CrmObject, query: str, limit: int = 20) -> list[Record]:
        obj = self._require(object)
        if obj is CrmObject.APPOINTMENT:
            # Appointments have no text search: the appointments of the customers the text finds.
            found: list[Record] = []
            for customer in await self._pages("customers", {"search": query}, limit):
                rows = await self._pages("appointments", {"customerId": customer["id"], "includeDeleted": "false"},
                                         limit - len(found))
                found += [self._record(obj, row) for row in rows]
                if len(found) >= limit:
                    break
            return found[:limit]
        return [self._record(obj, row) for row in await self._pages(_PATHS[obj], {"search": query}, limit)]

    async def list_recent(self, object: CrmObject, since: datetime, limit: int = 100) -> list[Record]:
        obj = self._require(object)
        params = {"updatedDateStart": iso_seconds(since)}
        rows = await self._pages(_PATHS[obj], params, _MAX_PAGE * _MAX_PAGES)
        rows = [row for row in rows if not row.get("deletedDate")]
        rows.sort(key=lambda row: (row.get("updatedDate") or "", int(row["id"])))
        return [self._record(obj, row) for row in rows[:limit]]

    async def ex_list_deleted(self, object: CrmObject, since: datetime, limit: int = 100) -> list[str]:
        """Ids of records deleted at or after `since` (Tekmetric's separate deleted-since call)."""
        obj = self._require(object)
        deleted = await self._pages(_PATHS[obj], {"deletedDateStart": iso_seconds(since)}, limit)
        return [str(row["id"]) for row in deleted]

    async def create_record(self, object: CrmObject, fields: Mapping[str, Any], idempotency_key: str) -> CreateResult:
        obj = self._require(object)
        if obj is CrmObject.CASE:
            raise InvalidRequestError("Tekmetric's API cannot create repair orders (read and patch only)",
                                      provider=self.slug)
        if obj is CrmObject.NOTE:
            raise InvalidRequestError("notes are written with append_note", provider=self.slug)
        fingerprint = request_fingerprint(obj, fields)
        if obj is CrmObject.APPOINTMENT:
            return await self._create_appointment(dict(fields), idempotency_key, fingerprint)
        replay = await self._replay_customer(fields, idempotency_key, fingerprint)
        if replay is not None:
            return replay
        body = self._customer_body(fields) | {"shopId": int(self._shop)}
        body["notes"] = "\n".join(filter(None, [body.get("notes"), _create_mark(idempotency_key, fingerprint)]))
        # A lost answer surfaces as UnavailableError; the retry's search finds the record it made.
        created = (await self._request_json("POST", "/api/v1/customers", json=body))["data"]
        return CreateResult(external_id=str(created["id"]), record_url=self._url(obj, created["id"]))

    async def update_record(self, object: CrmObject, external_id: str, fields: Mapping[str, Any]) -> Record | None:
        obj = self._require(object)
        if obj is CrmObject.NOTE:
            raise InvalidRequestError("notes are written with append_note", provider=self.slug)
        body = self._customer_body(fields) if obj is CrmObject.CUSTOMER else dict(fields)
        await self._request("PATCH", f"/api/v1/{_PATHS[obj]}/{int_id(external_id, self.slug)}", json=body)
        return None  # Tekmetric answers with an envelope whose `data` differs per object (an id, {}): re-read

    async def delete_record(self, object: CrmObject, external_id: str, *, hard: bool = False) -> DeleteResult:
        obj = self._require(object)
        if obj is not CrmObject.APPOINTMENT:
            raise DeleteUnsupportedError(f"Tekmetric's API cannot delete {_PATHS[obj]}; delete it in Tekmetric",
                                         provider=self.slug)
        await self._get(obj, external_id)  # a deleted appointment reads as not_found
        await self._request("DELETE", f"/api/v1/appointments/{int_id(external_id, self.slug)}")
        return DeleteResult(deleted=True, hard_deleted=False)  # Tekmetric keeps it with a deletedDate

    async def describe_schema(self, object: CrmObject) -> list[FieldInfo]:
        obj = self._require(object)
        names = [v for k, v in self.default_field_catalog.items() if k.startswith(f"{obj.value}.")]
        read_only = {"repairOrderStatus"}
        return [FieldInfo(name=n, label=n, type="string", read_only=n in read_only) for n in names]

    async def append_note(
        self, customer_external_id: str, note_external_id: str | None, text: str, *, batch_key: str
    ) -> CreateResult:
        customer_id = note_external_id or customer_external_id
        current = (await self._get(CrmObject.CUSTOMER, customer_id)).get("notes")
        body = appended(current, text, batch_key)
        if body is not None:
            await self._request("PATCH", f"/api/v1/customers/{int_id(customer_id, self.slug)}", json={"notes": body})
        return CreateResult(external_id=customer_id, record_url=self._url(CrmObject.CUSTOMER, customer_id),
                            created=note_external_id is None and body is not None)

    # ----- provider hooks ----------------------------------------------------------------------

    async def _probe(self) -> None:
        shops = await self._request_json("GET", "/api/v1/shops")
        if self._shop and not any(str(s.get("id")) == self._shop for s in shops or []):
            raise AuthError("the token's scope does not include the tenant's shop", provider=self.slug,
                            provider_code="insufficient_scope")

    async def _find_customer_by_phone(self, e164: str) -> CustomerRecord | None:
        for row in await self._pages("customers", {"search": national_digits(e164)}, 20):
            if self._same_phone(e164, *(p.get("number") for p in row.get("phone") or [])):
                return self._customer(row)
        return None

    async def _find_customer_by_email(self, email: str) -> CustomerRecord | None:
        for row in await self._pages("customers", {"search": email}, 20):
            if (row.get("email") or "").lower() == email.lower():
                return self._customer(row)
        return None

    async def _get_customer(self, external_id: str) -> CustomerRecord:
        return self._customer(await self._get(CrmObject.CUSTOMER, external_id))

    def _provider_code(self, response: httpx.Response) -> str | None:
        if not response.content:
            return None  # 401 and 429 come with an empty body
        body = response.json()
        code = body.get("error") or body.get("type") if isinstance(body, dict) else None
        return str(code) if code else None

    def _retry_after(self, response: httpx.Response) -> timedelta | None:
        return super()._retry_after(response) or timedelta(seconds=60)  # the per-minute window

    # ----- helpers -----------------------------------------------------------------------------

    async def _replay_customer(self, fields: Mapping[str, Any], key: str, fingerprint: str) -> CreateResult | None:
        identity = fields.get("email") or fields.get("phone") or full_name(fields.get("firstName"),
                                                                            fields.get("lastName"))
        if not identity:
            return None
        wanted = _digest(key)
        for row in await self._pages("customers", {"search": str(identity)}, 50):
            for mark in _CREATE_MARK.finditer(row.get("notes") or ""):
                if mark.group(1) == wanted:
                    if mark.group(2) != fingerprint[:16]:
                        raise key_reused(self.slug, str(row["id"]))
                    return CreateResult(external_id=str(row["id"]), record_url=self._url(CrmObject.CUSTOMER,
                                        row["id"]), created=False)
        return None

    async def _create_appointment(self, fields: dict[str, Any], key: str, fingerprint: str) -> CreateResult:
        # The appointment's description carries the create marker; the customer's appointments are its index.
        mark = _create_mark(key, fingerprint)
        customer = fields.get("customerId")
        if customer is not None:
            for row in await self._pages("appointments", {"customerId": customer, "includeDeleted": "false"}, 100):
                found = _CREATE_MARK.search(row.get("description") or "")
                if found and found.group(1) == _digest(key):
                    if found.group(2) != fingerprint[:16]:
                        raise key_reused(self.slug, str(row["id"]))
                    return CreateResult(external_id=str(row["id"]), created=False,
                                        record_url=self._url(CrmObject.APPOINTMENT, row["id"]))
        fields["description"] = "\n".join(filter(None, [fields.get("description"), mark]))
        body = await self._request_json("POST", "/api/v1/appointments", json=fields | {"shopId": int(self._shop)})
        return CreateResult(external_id=str(body["data"]), record_url=self._url(CrmObject.APPOINTMENT, body["data"]))

    def _url(self, obj: CrmObject, record_id: Any) -> str:
        kind = {"customers": "customers", "appointments": "appointments", "repair-orders": "repair-orders"}[_PATHS[obj]]
        return f"{self.api_base_url(self.config)}/admin/shop/{self._shop}/{kind}/{record_id}"

    def _record(self, obj: CrmObject, row: dict[str, Any]) -> Record:
        fields = dict(row)
        if obj is CrmObject.CUSTOMER:
            fields = _flat_customer(row)
        elif obj is CrmObject.NOTE:  # the customer's notes field, nothing else of the customer
            fields = {"notes": _flat_customer(row)["notes"]}
        updated = row.get("updatedDate")
        return Record(object=obj, external_id=str(row["id"]), fields=fields, url=self._url(obj, row["id"]),
                      updated_at=datetime.fromisoformat(updated.replace("Z", "+00:00")) if updated else None)

    def _customer(self, row: dict[str, Any]) -> CustomerRecord:
        fields = _flat_customer(row)
        return CustomerRecord(external_id=str(row["id"]), name=full_name(row.get("firstName"), row.get("lastName")),
                              phone=fields.get("phone"), email=row.get("email"), fields=fields,
                              url=self._url(CrmObject.CUSTOMER, row["id"]))

