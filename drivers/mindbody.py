"""Mindbody driver (salons, spas, studios): clients, appointments and client contact logs of one site."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
from pydantic import Field

from drivers.auth import HeaderAuth, OAuth2Auth, TokenSet
from drivers.base import (
    CreateResult,
    CrmObject,
    CustomerRecord,
    DeleteResult,
    FieldInfo,
    Record,
    TokenSourceFactory,
    appended,
    full_name,
    national_digits,
)
from drivers.errors import (
    AuthError,
    DeleteUnsupportedError,
    InvalidRequestError,
    UnavailableError,
)
from drivers.hosted import int_id, iso_seconds, json_object, key_reused, parse_time
from drivers.mindbody_reads import MindbodyReads, client_rssid
from drivers.mindbody_webhooks import MindbodyVerifier
from drivers.provider import CredentialForm, RateLimit
from drivers.text import batch_marker

_IDENTITY = ("FirstName", "LastName", "Email")  # Mindbody's own duplicate rule (case-insensitive)


class MindbodyCredentials(CredentialForm):
    """A Mindbody site: its id, the API key, and a staff login whose user token the driver issues."""

    site_id: str = Field(min_length=1, max_length=16, pattern=r"^-?\d+$")
    api_key: str = Field(min_length=8, max_length=256, pattern=r"^\S+$")
    username: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=256)

    def secret(self) -> dict[str, Any]:
        return {"auth": "token", "api_key": self.api_key, "username": self.username, "password": self.password}

    def settings(self) -> dict[str, Any]:
        return {"site_id": self.site_id}


class MindbodyDriver(MindbodyReads):
    """Mindbody Public API.

    API version: v6 (`https://api.mindbodyonline.com/public/v6`). Auth: `Api-Key` and `SiteId` headers on every
    call plus a staff user token (`POST /usertoken/issue`, 24 h, `Authorization: Bearer <token>`), issued
    through `grant_token` and persisted by the vault, re-issued only on expiry or one 401. Pagination:
    `request.limit` (≤ 200) / `request.offset` with a `PaginationResponse`. Rate limits: no burst limit and no
    headers; a daily call cap per API key (1,000 on the sandbox site and free tier), which every call — the
    token issue included — counts against.

    Objects: clients (CUSTOMER, id = the client ID / RSSID), appointments (book, reschedule, cancel through
    `update_record(..., {"Execute": "cancel"})`) and client contact logs (NOTE, id `<client id>:<log id>`).
    Mindbody has no delete: every `delete_record` raises `DeleteUnsupportedError`. Idempotent create: a client
    created under a key gets the client ID `crm-<key digest>` (`NewId`), found again with `request.clientIDs`;
    the same key with another name or email is a conflict; before creating, Mindbody's duplicate check
    (first + last name + email) returns an existing client instead of a refused duplicate. Appointments carry
    the key in `PartnerExternalId` (server-side request deduplication).
    """

    slug = "mindbody"
    webhook_verifier = MindbodyVerifier()  # drivers/mindbody_webhooks.py
    base_url = "https://api.mindbodyonline.com/public/v6"
    token_url = base_url + "/usertoken/issue"
    credential_form = MindbodyCredentials
    rate_limits = (RateLimit(1000, 86400.0, source="Mindbody developer FAQ (via api-evangelist/mindbody): 1,000 "
                                                   "calls per API key per day on the sandbox site and free tier"),)
    supported_objects: ClassVar[frozenset[CrmObject]] = frozenset(
        {CrmObject.CUSTOMER, CrmObject.APPOINTMENT, CrmObject.NOTE})
    deletable_objects: ClassVar[frozenset[CrmObject] | None] = frozenset()
    default_field_catalog: ClassVar[dict[str, str]] = {
        "customer.first_name": "FirstName",
        "customer.last_name": "LastName",
        "customer.email": "Email",
        "customer.phone": "MobilePhone",
        "customer.home_phone": "HomePhone",
        "customer.city": "City",
        "customer.notes": "Notes",
        # The lifecycle's appointment keys (as Salesforce's) plus what a Mindbody booking also needs.
        "appointment.start": "StartDateTime",
        "appointment.end": "EndDateTime",
        "appointment.duration_minutes": "Duration",
        "appointment.description": "Notes",
        "appointment.client_id": "ClientId",
        "appointment.staff_id": "StaffId",
        "appointment.location_id": "LocationId",
        "appointment.session_type_id": "SessionTypeId",
        "appointment.status": "Status",
        "appointment.execute": "Execute",  # an update verb the booking API takes as a field ("cancel", …)
        "note.body": "Text",
    }

    @classmethod
    def build_auth(cls, secret: Mapping[str, Any], config: Mapping[str, Any], tokens: TokenSourceFactory
                   ) -> httpx.Auth:
        return HeaderAuth(OAuth2Auth(tokens()), cls._site_headers(secret, config))

    @classmethod
    def _site_headers(cls, secret: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, str]:
        if not secret.get("api_key") or not config.get("site_id"):
            raise AuthError("the Mindbody connection lacks its API key or site id", provider=cls.slug)
        return {"Api-Key": str(secret["api_key"]), "SiteId": str(config["site_id"])}

    @classmethod
    async def grant_token(cls, http: httpx.AsyncClient, secret: Mapping[str, Any], config: Mapping[str, Any],
                          client: tuple[str, str] | None) -> TokenSet:
        """Issue a staff user token (one call against the daily cap; the vault keeps it for its 24 hours)."""
        url = str((config or {}).get("token_url") or cls.api_base_url(config) + "/usertoken/issue")
        body = {"Username": secret.get("username"), "Password": secret.get("password")}
        try:
            response = await http.post(url, json=body, headers=cls._site_headers(secret, config))
        except httpx.TransportError as exc:
            raise UnavailableError(f"user token endpoint unreachable ({type(exc).__name__})",
                                   provider=cls.slug) from exc
        code = _error_code(response)
        if response.status_code >= 500 or response.status_code == 429:
            raise UnavailableError("user token endpoint failed", provider=cls.slug, status_code=response.status_code,
                                   provider_code=code)
        try:
            issued = response.json() if response.status_code == 200 else {}
        except ValueError:
            issued = {}
        if not isinstance(issued, dict) or not issued.get("AccessToken"):
            raise AuthError("staff login refused", provider=cls.slug, status_code=response.status_code,
                            provider_code=code)
        expires_in = None
        if issued.get("Expires"):
            expires = parse_time(str(issued["Expires"]))
            expires_in = max(0, int((expires - datetime.now(UTC)).total_seconds()))
        return TokenSet(access_token=str(issued["AccessToken"]), refresh_token="", expires_in=expires_in)

    # ----- verbs -------------------------------------------------------------------------------

    async def get_record(self, object: CrmObject, external_id: str) -> Record:
        obj = self._require(object)
        if obj is CrmObject.CUSTOMER:
            return self._record(obj, await self._client(external_id))
        if obj is CrmObject.APPOINTMENT:
            return self._record(obj, await self._appointment(external_id))
        return self._note_record(*await self._log(external_id))

    async def search_records(self, object: CrmObject, query: str, limit: int = 20) -> list[Record]:
        obj = self._require(object)
        clients = await self._clients({"request.searchText": query}, limit)
        if obj is CrmObject.CUSTOMER:
            return [self._record(obj, c) for c in clients]
        found: list[Record] = []
        for client in clients:  # appointments and contact logs of the clients the text finds
            if obj is CrmObject.APPOINTMENT:
                found += [self._record(obj, a) for a in await self._appointments_of(client["Id"])]
            else:
                found += [self._note_record(client["Id"], log) for log in await self._logs(client["Id"])]
            if len(found) >= limit:
                break
        return found[:limit]

    async def list_recent(self, object: CrmObject, since: datetime, limit: int = 100) -> list[Record]:
        obj = self._require(object)
        if obj is not CrmObject.CUSTOMER:
            raise InvalidRequestError(f"Mindbody cannot list {obj.value} records by modification date",
                                      provider=self.slug)
        rows = await self._modified_since(iso_seconds(since), limit)
        rows.sort(key=lambda c: (parse_time(c.get("LastModifiedDateTime") or "1970-01-01T00:00:00Z"), c["UniqueId"]))
        return [self._record(obj, c) for c in rows]

    async def create_record(self, object: CrmObject, fields: Mapping[str, Any], idempotency_key: str) -> CreateResult:
        obj = self._require(object)
        if obj is CrmObject.NOTE:
            raise InvalidRequestError("notes are written with append_note", provider=self.slug)
        if obj is CrmObject.APPOINTMENT:
            return await self._book(dict(fields), idempotency_key)
        rssid = client_rssid(idempotency_key)
        ours = await self._clients({"request.clientIDs": rssid, "request.includeInactive": "true"}, 1)
        if ours:
            if any(str(ours[0].get(k) or "").lower() != str(fields.get(k) or "").lower() for k in _IDENTITY):
                raise key_reused(self.slug, rssid)
            return CreateResult(external_id=rssid, record_url=self._url(rssid), created=False)
        if fields.get("FirstName") and fields.get("LastName"):
            params = {"request.firstName": fields["FirstName"], "request.lastName": fields["LastName"],
                      "request.email": fields.get("Email") or ""}
            body = await self._request_json("GET", "/client/clientduplicates", params=params)
            duplicates = body.get("ClientDuplicates") or []
            if duplicates:  # Mindbody would refuse the add: the person is already a client
                existing = str(duplicates[0]["Id"])
                return CreateResult(external_id=existing, record_url=self._url(existing), created=False)
        created = await self._request_json("POST", "/client/addclient", json=dict(fields) | {"NewId": rssid})
        return CreateResult(external_id=str(created["Client"]["Id"]), record_url=self._url(rssid))

    async def update_record(self, object: CrmObject, external_id: str, fields: Mapping[str, Any]) -> Record | None:
        obj = self._require(object)
        if obj is CrmObject.CUSTOMER:
            body = {"Client": dict(fields) | {"Id": external_id}, "CrossRegionalUpdate": False}
            return self._record(obj, (await self._request_json("POST", "/client/updateclient", json=body))["Client"])
        if obj is CrmObject.APPOINTMENT:
            body = dict(fields) | {"AppointmentId": int_id(external_id, self.slug)}
            answer = await self._request_json("POST", "/appointment/updateappointment", json=body)
            return self._record(obj, answer["Appointment"])
        raise InvalidRequestError("notes are written with append_note", provider=self.slug)

    async def delete_record(self, object: CrmObject, external_id: str, *, hard: bool = False) -> DeleteResult:
        obj = self._require(object)
        how = "cancel it with update_record Execute=cancel" if obj is CrmObject.APPOINTMENT else "delete it in Mindbody"
        raise DeleteUnsupportedError(f"Mindbody's API has no delete for {obj.value} records; {how}",
                                     provider=self.slug)

    async def describe_schema(self, object: CrmObject) -> list[FieldInfo]:
        obj = self._require(object)
        names = [v for k, v in self.default_field_catalog.items() if k.startswith(f"{obj.value}.")]
        return [FieldInfo(name=n, label=n, type="string", read_only=n == "Status") for n in names]

    async def append_note(
        self, customer_external_id: str, note_external_id: str | None, text: str, *, batch_key: str
    ) -> CreateResult:
        if note_external_id is None:
            marker = batch_marker(batch_key)
            for log in await self._logs(customer_external_id):  # a retried create finds its first batch
                if marker in (log.get("Text") or ""):
                    return CreateResult(external_id=f"{customer_external_id}:{log['Id']}", created=False)
            body = {"ClientId": customer_external_id, "Text": appended(None, text, batch_key),
                    "ContactMethod": str(self.config.get("contact_method", "Phone")), "ContactName": "AI agent"}
            log = await self._request_json("POST", "/client/addcontactlog", json=body)
            return CreateResult(external_id=f"{customer_external_id}:{log['Id']}", created=True)
        client_id, log = await self._log(note_external_id)
        updated = appended(log.get("Text"), text, batch_key)
        if updated is not None:
            await self._request("POST", "/client/updatecontactlog", json={"Id": log["Id"], "Text": updated})
        return CreateResult(external_id=note_external_id, created=False)

    # ----- provider hooks ----------------------------------------------------------------------

    async def _probe(self) -> None:
        await self._request("GET", "/site/locations", params={"request.limit": 1})

    async def _find_customer_by_phone(self, e164: str) -> CustomerRecord | None:
        # searchText documents names and email only; phones are matched here after normalising.
        for client in await self._clients({"request.searchText": national_digits(e164)}, 20):
            if self._same_phone(e164, client.get("MobilePhone"), client.get("HomePhone"), client.get("WorkPhone")):
                return self._customer(client)
        return None

    async def _find_customer_by_email(self, email: str) -> CustomerRecord | None:
        for client in await self._clients({"request.searchText": email}, 20):
            if (client.get("Email") or "").lower() == email.lower():
                return self._customer(client)
        return None

    async def _get_customer(self, external_id: str) -> CustomerRecord:
        return self._customer(await self._client(external_id))

    def _provider_code(self, response: httpx.Response) -> str | None:
        return _error_code(response)

    def _retry_after(self, response: httpx.Response) -> timedelta | None:
        # The daily cap resets at the site's midnight, which we don't know: look again in an hour.
        return super()._retry_after(response) or timedelta(hours=1)

    # ----- helpers -----------------------------------------------------------------------------

    def _url(self, client_id: str) -> str:
        return f"https://clients.mindbodyonline.com/app/business/clients/{client_id}?studioid={self.config.get('site_id')}"

    def _record(self, obj: CrmObject, row: dict[str, Any]) -> Record:
        stamp = row.get("LastModifiedDateTime")
        url = self._url(str(row["Id"] if obj is CrmObject.CUSTOMER else row.get("ClientId")))
        return Record(object=obj, external_id=str(row["Id"]), fields=dict(row), url=url,
                      updated_at=parse_time(stamp) if stamp else None)

    def _note_record(self, client_id: str, log: dict[str, Any]) -> Record:
        fields = {k: v for k, v in log.items() if k != "Client"}
        return Record(object=CrmObject.NOTE, external_id=f"{client_id}:{log['Id']}", fields=fields,
                      url=self._url(client_id))

    def _customer(self, client: dict[str, Any]) -> CustomerRecord:
        return CustomerRecord(external_id=str(client["Id"]), name=full_name(client.get("FirstName"),
                              client.get("LastName")), phone=client.get("MobilePhone") or client.get("HomePhone"),
                              email=client.get("Email"), fields=dict(client), url=self._url(str(client["Id"])))


def _error_code(response: httpx.Response) -> str | None:
    error = json_object(response).get("Error")
    return str(error["Code"]) if isinstance(error, dict) and error.get("Code") else None

