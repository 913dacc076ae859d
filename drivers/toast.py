"""Toast driver (restaurants): the guests of one restaurant, read from orders and the CRM customers API."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

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
    full_name,
    national_digits,
    normalize_phone,
)
from drivers.errors import (
    AuthError,
    DeleteUnsupportedError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    UnavailableError,
    parse_retry_after,
)
from drivers.hosted import HostedDriver, json_object, key_reused, parse_time
from drivers.provider import CredentialForm, RateLimit
from drivers.toast_webhooks import ToastVerifier

HOSTS = {"production": "https://ws-api.toasttab.com", "sandbox": "https://ws-sandbox-api.eng.toasttab.com"}
LOGIN_PATH = "/authentication/v1/authentication/login"
_GUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_IDENTITY = ("firstName", "lastName", "email", "phone")
_MAX_PAGE = 100
_KEYS = uuid.UUID("5d1f0c1e-2b7a-4f7e-9a43-3c1a0e6b8d21")  # namespace of the guest guids our keys become


class ToastCredentials(CredentialForm):
    """A Toast partner API client (client id and secret) and the restaurant (its GUID) the tenant is."""

    client_id: str = Field(min_length=1, max_length=256, pattern=r"^\S+$")
    client_secret: str = Field(min_length=1, max_length=512)
    restaurant_guid: str = Field(pattern=_GUID)
    environment: Literal["production", "sandbox"] = "production"

    def secret(self) -> dict[str, Any]:
        return {"auth": "token", "client_id": self.client_id, "client_secret": self.client_secret}

    def settings(self) -> dict[str, Any]:
        return {"restaurant_guid": self.restaurant_guid.lower(), "environment": self.environment}


@dataclass(frozen=True)
class ToastRateLimit:
    """What Toast's last answer said of the client's budget (`X-Toast-RateLimit-*`), for the provider budget."""

    by: str  # GLOBAL | API | ENDPOINT: which limit is the binding one
    remaining: int
    reset_epoch: int

    @classmethod
    def read(cls, headers: httpx.Headers) -> ToastRateLimit | None:
        remaining, reset = headers.get("X-Toast-RateLimit-Remaining"), headers.get("X-Toast-RateLimit-Reset")
        if not (remaining and reset and remaining.isdigit() and reset.isdigit()):
            return None
        return cls(headers.get("X-Toast-RateLimit-By", "GLOBAL"), int(remaining), int(reset))


class ToastDriver(HostedDriver):
    """Toast.

    API version: orders v2 (`/orders/v2`) and the CRM customers API v1 (`/crm/v1`, documented as deprecated:
    Toast asks partners to confirm access); hosts issued per partner (`ws-api.toasttab.com` production,
    `ws-sandbox-api.eng.toasttab.com` sandbox; tenant setting `environment` or `base_url`). Auth: partner
    client-credentials login (`POST /authentication/v1/authentication/login`, `TOAST_MACHINE_CLIENT`) giving a
    bearer valid 24 h, reused for its whole life (the auth endpoint allows a couple of logins an hour): the
    vault re-logs in only near `expiresIn` or on one 401; plus `Toast-Restaurant-External-ID` on every call.
    Pagination: `ordersBulk` `pageSize` ≤ 100 and `page`, following the `Link: rel="next"` header. Rate limits:
    20 requests/s and 10,000 per 15 min per client; `X-Toast-RateLimit-{By,Remaining,Reset}` on every answer,
    429 with `Retry-After` (else the reset epoch gives `retry_after`).

    Guests only (CUSTOMER): read and searched through the CRM API, listed by modification from the orders
    that carry them (`checks[].customer`), created under a `guid` derived from our idempotency key (Toast's
    natural idempotency). Toast offers no guest update, no delete and no notes: those verbs raise clear
    `InvalidRequestError` / `DeleteUnsupportedError` answers naming the unsupported operation.
    """

    slug = "toast"
    webhook_verifier = ToastVerifier()  # drivers/toast_webhooks.py
    hosts = HOSTS
    token_path = LOGIN_PATH
    base_url = HOSTS["production"]
    token_url = HOSTS["production"] + LOGIN_PATH
    credential_form = ToastCredentials
    rate_limits = (
        RateLimit(20, 1.0, source="Toast developer guide, API rate limiting: 20 requests per second per client"),
        RateLimit(10000, 900.0, source="Toast developer guide, API rate limiting: 10,000 requests per 15 minutes"),
        RateLimit(2, 3600.0, scope="login", source="Toast developer guide, authentication rate limit: at most "
                                                  "twice an hour"),
    )
    supported_objects: ClassVar[frozenset[CrmObject]] = frozenset({CrmObject.CUSTOMER})
    deletable_objects: ClassVar[frozenset[CrmObject] | None] = frozenset()
    default_field_catalog: ClassVar[dict[str, str]] = {
        "customer.first_name": "firstName",
        "customer.last_name": "lastName",
        "customer.email": "email",
        "customer.phone": "phone",
    }

    @classmethod
    def build_auth(cls, secret: Mapping[str, Any], config: Mapping[str, Any], tokens: TokenSourceFactory
                   ) -> httpx.Auth:
        if not config.get("restaurant_guid"):
            raise AuthError("the Toast connection has no restaurant GUID", provider=cls.slug)
        return HeaderAuth(OAuth2Auth(tokens()), {"Toast-Restaurant-External-ID": str(config["restaurant_guid"])})

    @classmethod
    async def grant_token(cls, http: httpx.AsyncClient, secret: Mapping[str, Any], config: Mapping[str, Any],
                          client: tuple[str, str] | None) -> TokenSet:
        """One partner login. A refused login is an AuthError; Toast's login limit a RateLimitedError."""
        body = {"clientId": secret.get("client_id"), "clientSecret": secret.get("client_secret"),
                "userAccessType": "TOAST_MACHINE_CLIENT"}
        try:
            response = await http.post(str(cls.oauth_token_url(config)), json=body)
        except httpx.TransportError as exc:
            raise UnavailableError(f"login endpoint unreachable ({type(exc).__name__})", provider=cls.slug) from exc
        code = _error_code(response)
        if response.status_code == 429:
            raise RateLimitedError("login rate limit reached", provider=cls.slug, status_code=429, provider_code=code,
                                   retry_after=parse_retry_after(response.headers.get("Retry-After")))
        if response.status_code >= 500:
            raise UnavailableError("login endpoint failed", provider=cls.slug, status_code=response.status_code)
        token = (json_object(response).get("token") or {}) if response.status_code == 200 else {}
        if not token.get("accessToken"):
            raise AuthError("partner login refused", provider=cls.slug, status_code=response.status_code,
                            provider_code=code)
        expires = token.get("expiresIn")
        return TokenSet(access_token=str(token["accessToken"]), refresh_token="",
                        expires_in=int(expires) if expires is not None else None)

    def __init__(self, client: httpx.AsyncClient, config: dict[str, Any] | None = None) -> None:
        super().__init__(client, config)
        self.rate_limit: ToastRateLimit | None = None  # read back after every answer

    # ----- verbs -------------------------------------------------------------------------------

    async def get_record(self, object: CrmObject, external_id: str) -> Record:
        self._require(object)
        return self._record(await self._guest(external_id))

    async def search_records(self, object: CrmObject, query: str, limit: int = 20) -> list[Record]:
        self._require(object)
        text = query.strip()
        e164 = normalize_phone(text, self.default_region) if any(c.isdigit() for c in text) else None
        if "@" in text:
            queries: list[dict[str, str]] = [{"email": text}]
        elif e164:
            queries = [{"phone": national_digits(e164)}]
        else:
            queries = [{"lastName": text}, {"firstName": text}]
        found: dict[str, dict[str, Any]] = {}
        for one in queries:
            for guest in await self._request_json("POST", "/crm/v1/customers/search", json={"query": one}):
                found.setdefault(guest["guid"], guest)
        return [self._record(g) for g in list(found.values())[:limit]]

    async def list_recent(self, object: CrmObject, since: datetime, limit: int = 100) -> list[Record]:
        """Guests of the orders modified at or after `since`, in order of their latest such order."""
        self._require(object)
        end = datetime.now(UTC) + timedelta(seconds=1)
        if since >= end:
            return []
        params: dict[str, Any] | None = {"startDate": _toast_time(since), "endDate": _toast_time(end),
                                         "pageSize": _MAX_PAGE, "page": 1}
        url = "/orders/v2/ordersBulk"
        guests: dict[str, Record] = {}
        while url and len(guests) < limit:
            response = await self._request("GET", url, params=params)
            for order in self._json("GET", response) or []:
                for check in order.get("checks") or []:
                    customer = check.get("customer")
                    if customer and customer.get("guid") and customer["guid"] not in guests:
                        guests[customer["guid"]] = self._record(customer, order.get("modifiedDate"))
            url, params = response.links.get("next", {}).get("url", ""), None
        return list(guests.values())[:limit]

    async def create_record(self, object: CrmObject, fields: Mapping[str, Any], idempotency_key: str) -> CreateResult:
        self._require(object)
        guid = str(uuid.uuid5(_KEYS, f"{self.config.get('restaurant_guid')}:{idempotency_key}"))
        existing = await self._request_or_none("GET", f"/crm/v1/customers/{guid}")
        if existing is not None:
            stored = self._json("GET", existing)
            if any(str(stored.get(k) or "").lower() != str(fields.get(k) or "").lower() for k in _IDENTITY):
                raise key_reused(self.slug, guid)
            return CreateResult(external_id=guid, record_url=self._url(guid), created=False)
        if fields.get("email"):  # "the email address identifies a unique restaurant guest"
            for guest in await self._request_json("POST", "/crm/v1/customers/search",
                                                  json={"query": {"email": fields["email"]}}):
                return CreateResult(external_id=guest["guid"], record_url=self._url(guest["guid"]), created=False)
        created = await self._request_json("POST", "/crm/v1/customers", json=dict(fields) | {"guid": guid})
        return CreateResult(external_id=created["guid"], record_url=self._url(created["guid"]))

    async def update_record(self, object: CrmObject, external_id: str, fields: Mapping[str, Any]) -> Record | None:
        self._require(object)
        raise InvalidRequestError("unsupported: Toast's API has no update for guests (customers)", provider=self.slug)

    async def delete_record(self, object: CrmObject, external_id: str, *, hard: bool = False) -> DeleteResult:
        self._require(object)
        raise DeleteUnsupportedError("Toast's API has no delete for guests; remove the guest in Toast",
                                     provider=self.slug)

    async def describe_schema(self, object: CrmObject) -> list[FieldInfo]:
        self._require(object)
        return [FieldInfo(name=n, label=n, type="string") for n in self.default_field_catalog.values()]

    async def append_note(
        self, customer_external_id: str, note_external_id: str | None, text: str, *, batch_key: str
    ) -> CreateResult:
        raise InvalidRequestError("unsupported: Toast has no place for conversation notes on a guest",
                                  provider=self.slug)

    async def _probe(self) -> None:
        end = datetime.now(UTC)
        params = {"startDate": _toast_time(end - timedelta(minutes=1)), "endDate": _toast_time(end), "pageSize": 1}
        await self._request("GET", "/orders/v2/ordersBulk", params=params)

    async def _find_customer_by_phone(self, e164: str) -> CustomerRecord | None:
        query = {"query": {"phone": national_digits(e164)}}
        for guest in await self._request_json("POST", "/crm/v1/customers/search", json=query):
            if self._same_phone(e164, guest.get("phone")):
                return self._customer(guest)
        return None

    async def _find_customer_by_email(self, email: str) -> CustomerRecord | None:
        query = {"query": {"email": email}}
        for guest in await self._request_json("POST", "/crm/v1/customers/search", json=query):
            if (guest.get("email") or "").lower() == email.lower():
                return self._customer(guest)
        return None

    async def _get_customer(self, external_id: str) -> CustomerRecord:
        return self._customer(await self._guest(external_id))

    def _provider_code(self, response: httpx.Response) -> str | None:
        return _error_code(response)

    def _retry_after(self, response: httpx.Response) -> timedelta | None:
        stated = super()._retry_after(response)
        reset = response.headers.get("X-Toast-RateLimit-Reset")
        if stated is None and reset and reset.isdigit():
            return timedelta(seconds=max(1, int(reset) - int(time.time())))
        return stated

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = await super()._request(method, url, **kwargs)
        self.rate_limit = ToastRateLimit.read(response.headers) or self.rate_limit
        return response

    async def _guest(self, guid: str) -> dict[str, Any]:
        if not re.fullmatch(_GUID, guid):
            raise NotFoundError("Toast guest ids are GUIDs", provider=self.slug)
        guest: dict[str, Any] = await self._request_json("GET", f"/crm/v1/customers/{guid}")
        return guest

    def _url(self, guid: str) -> str:
        return f"https://www.toasttab.com/restaurants/admin/guests/{guid}"

    def _record(self, guest: dict[str, Any], modified: str | None = None) -> Record:
        fields = {k: guest.get(k) for k in ("firstName", "lastName", "email", "phone", "phoneCountryCode")}
        return Record(object=CrmObject.CUSTOMER, external_id=str(guest["guid"]), fields=fields,
                      url=self._url(str(guest["guid"])), updated_at=parse_time(modified) if modified else None)

    def _customer(self, guest: dict[str, Any]) -> CustomerRecord:
        record, name = self._record(guest), full_name(guest.get("firstName"), guest.get("lastName"))
        return CustomerRecord(external_id=record.external_id, name=name, phone=guest.get("phone"),
                              email=guest.get("email"), fields=record.fields, url=record.url)


def _toast_time(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def _error_code(response: httpx.Response) -> str | None:
    code = json_object(response).get("code")
    return str(code) if code is not None else None
