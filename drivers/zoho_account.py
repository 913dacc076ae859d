"""Zoho CRM account facts shared by the driver: data centres, OAuth, documented limits, error codes and the
write/read plumbing under the verbs (per-row batch results, the COQL key read).

Split from drivers/zoho.py (which holds the verbs) to keep both under the module size limit; `ZohoDriver` is
the only subclass.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from drivers.auth import TokenSet
from drivers.base import BaseDriver, CrmObject, UpsertOutcome
from drivers.errors import (
    AuthError,
    ConflictError,
    DriverError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    field_problems,
)
from drivers.provider import OAuthApp, RateLimit

MODULES = {CrmObject.CUSTOMER: "Contacts", CrmObject.LEAD: "Leads", CrmObject.DEAL: "Deals",
           CrmObject.CASE: "Cases", CrmObject.NOTE: "Notes"}
# Data centre -> (accounts server, API domain). multi-dc.html; CA and SA from the FSM refresh-token page; AE from
# WorkDrive's multi-DC table (domain zoho.ae, www.zohoapis.ae); UK from ManageEngine's Zoho-accounts table.
DATA_CENTRES: dict[str, tuple[str, str]] = {
    "us": ("https://accounts.zoho.com", "https://www.zohoapis.com"),
    "eu": ("https://accounts.zoho.eu", "https://www.zohoapis.eu"),
    "in": ("https://accounts.zoho.in", "https://www.zohoapis.in"),
    "au": ("https://accounts.zoho.com.au", "https://www.zohoapis.com.au"),
    "jp": ("https://accounts.zoho.jp", "https://www.zohoapis.jp"),
    "cn": ("https://accounts.zoho.com.cn", "https://www.zohoapis.com.cn"),
    "ca": ("https://accounts.zohocloud.ca", "https://www.zohoapis.ca"),
    "sa": ("https://accounts.zoho.sa", "https://www.zohoapis.sa"),
    "ae": ("https://accounts.zoho.ae", "https://www.zohoapis.ae"),
    "uk": ("https://accounts.zoho.uk", "https://www.zohoapis.uk"),
}
ACCOUNTS_SERVERS = frozenset(a for a, _ in DATA_CENTRES.values())
API_DOMAINS = frozenset(d for _, d in DATA_CENTRES.values())
_AUTH_CODES = {"INVALID_TOKEN", "AUTHENTICATION_FAILURE", "OAUTH_SCOPE_MISMATCH", "NO_PERMISSION"}
_CONFLICT_CODES = {"DUPLICATE_DATA", "RECORD_LOCKED", "ALREADY_USED"}
_LIMIT_CODES = {"TOO_MANY_REQUESTS", "LIMIT_REACHED"}


def _origin(url: str) -> str:
    parts = urlsplit(url.strip())
    return f"{parts.scheme}://{parts.netloc}".lower()


class ZohoAccount(BaseDriver):
    """Zoho's per-account facts and error mapping (see ZohoDriver for the API itself)."""

    slug = "zoho"
    base_url = DATA_CENTRES["us"][1]
    token_url = DATA_CENTRES["us"][0] + "/oauth/v2/token"
    auth_scheme = "Zoho-oauthtoken"
    # Consent starts on the US accounts server; Zoho sends the user to their own DC and names it on the way back.
    oauth = OAuthApp(
        authorize_url=DATA_CENTRES["us"][0] + "/oauth/v2/auth",
        scopes=("ZohoCRM.modules.ALL", "ZohoCRM.settings.fields.READ", "ZohoCRM.users.READ"),
        pkce=False,
        scope_separator=",",
        extra_params=(("access_type", "offline"), ("prompt", "consent")),
    )
    rate_limits = (
        # Professional edition floor; the org's own figure is 50,000 + 500 per user licence (max 3M).
        RateLimit(50_000, 86_400.0, source="Zoho CRM v8 API limits: credits per 24 h, Professional edition"),
        RateLimit(10, 600.0, scope="token",
                  source="Zoho accounts: 10 access tokens per refresh token per 10 minutes (access-token-expiry)"),
    )
    batch_size = 100  # records per insert/update/upsert call
    # ----- per-tenant hosts --------------------------------------------------------------------

    @classmethod
    def api_base_url(cls, config: Mapping[str, Any] | None = None) -> str:
        config = config or {}
        if config.get("base_url"):
            return str(config["base_url"])
        domain = config.get("api_domain") or config.get("instance_url")
        if domain:
            if _origin(str(domain)) not in API_DOMAINS:
                raise AuthError("the stored API domain is not a Zoho data centre: reconnect", provider=cls.slug)
            return _origin(str(domain))
        accounts = config.get("accounts_server")
        dc = next((d for d, (a, _) in DATA_CENTRES.items() if a == accounts), "us")
        return DATA_CENTRES[dc][1]

    @classmethod
    def oauth_token_url(cls, config: Mapping[str, Any] | None = None) -> str | None:
        config = config or {}
        if config.get("token_url"):
            return str(config["token_url"])
        accounts = str(config.get("accounts_server") or DATA_CENTRES["us"][0])
        return f"{accounts}/oauth/v2/token"

    @classmethod
    def oauth_callback_settings(cls, query: Mapping[str, str]) -> dict[str, Any]:
        # The browser brings these back, so they are attacker-controlled: only a known accounts server may
        # receive our client secret and the code.
        server = query.get("accounts-server")
        if not server:
            return {}
        origin = _origin(server)
        if origin not in ACCOUNTS_SERVERS:
            raise InvalidRequestError("the redirect names an unknown accounts server", provider=cls.slug)
        location = str(query.get("location") or "").lower()
        return {"accounts_server": origin, "location": location if location in DATA_CENTRES else None}

    @classmethod
    def settings_from_tokens(cls, tokens: TokenSet) -> dict[str, Any]:
        if tokens.instance_url is None:
            return {}
        if _origin(tokens.instance_url) not in API_DOMAINS:
            raise InvalidRequestError("the token response names an unknown API domain", provider=cls.slug)
        return {"api_domain": _origin(tokens.instance_url)}

    @classmethod
    async def grant_token(cls, http: httpx.AsyncClient, secret: Mapping[str, Any], config: Mapping[str, Any],
                          client: tuple[str, str] | None) -> TokenSet:
        try:
            return await super().grant_token(http, secret, config, client)
        except AuthError as exc:
            # "Access Denied" is the accounts server's throttle (too many tokens), not a revoked grant.
            if exc.provider_code == "Access Denied":
                raise RateLimitedError("token endpoint throttled", provider=cls.slug, status_code=exc.status_code,
                                       provider_code=exc.provider_code, retry_after=timedelta(minutes=10)) from None
            raise

    def _provider_code(self, response: httpx.Response) -> str | None:
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("data"), list) and body["data"]:
            body = body["data"][0]
        code = body.get("code") if isinstance(body, dict) else None
        return str(code) if code else None

    def _classify(self, response: httpx.Response, provider_code: str | None) -> type[DriverError] | None:
        return _class_for(provider_code, response.status_code)

    def _field_problems(self, response: httpx.Response) -> dict[str, str]:
        body = response.json()
        data = body.get("data") if isinstance(body, dict) else None
        items: list[Any] = data if isinstance(data, list) else [body]
        return {name: kind for item in items if isinstance(item, dict) for name, kind in _item_fields(item).items()}

    def _retry_after(self, response: httpx.Response) -> timedelta | None:
        stated = super()._retry_after(response)
        return stated if stated is not None else timedelta(seconds=float(
            self.config.get("limit_retry_after_seconds", 60)))

    def _error_for(self, method: str, response: httpx.Response) -> DriverError:
        error = super()._error_for(method, response)
        if isinstance(error, AuthError) and error.provider_code == "INVALID_TOKEN":
            # The auth flow already refreshed once: a fresh token refused here was issued by another data
            # centre's accounts server (or revoked). Either way only a reconnect helps; say which host refused.
            return AuthError(f"the access token is not valid on {response.request.url.host}: the account may be "
                             "in another data centre; reconnect the CRM", provider=self.slug,
                             status_code=error.status_code, provider_code=error.provider_code)
        return error

    async def _one(self, method: str, path: str, **kwargs: Any) -> None:
        """A single-record write: its outcome is `data[0]`, with 400 when it failed."""
        response = await self._request(method, path, accept={400}, **kwargs)
        body = self._json(method, response)
        items = body.get("data") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise self._error_for(method, response)
        self._raise_item(items[0])

    async def _upsert(self, obj: CrmObject, rows: list[dict[str, Any]]) -> list[UpsertOutcome]:
        return await self._write("POST", obj, rows, "/upsert", duplicate_check_fields=[self._key_field])

    async def _write(self, method: str, obj: CrmObject, rows: list[dict[str, Any]], suffix: str = "",
                     **extra: Any) -> list[UpsertOutcome]:
        """One batch call; per-row outcomes from `data[]` (207/400 carry per-row errors, not one failure)."""
        payload = {"data": rows, "trigger": [], **extra}
        response = await self._request(method, f"/crm/v8/{MODULES[obj]}{suffix}", json=payload, accept={400})
        body = self._json(method, response)
        items = body.get("data") if isinstance(body, dict) else None
        if not isinstance(items, list) or len(items) != len(rows):  # a request-level error, not per-row results
            raise self._error_for(method, response)
        out = []
        for item in items:
            try:
                self._raise_item(item)
            except DriverError as exc:
                out.append(UpsertOutcome(error=exc))
                continue
            out.append(UpsertOutcome(external_id=str(item["details"]["id"]), created=item.get("action") != "update"))
        return out

    async def _keyed(self, obj: CrmObject, keys: list[str]) -> dict[str, dict[str, Any]]:
        """Live records holding any of `keys` in the key field: COQL, 50 values per `in` (keys are path-safe)."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), 50):
            chunk = ", ".join(f"'{k}'" for k in keys[start:start + 50])
            query = (f"select id, {self._key_field}, {self._fingerprint_field} from {MODULES[obj]} "
                     f"where {self._key_field} in ({chunk}) limit 200")
            body = await self._request_json("POST", "/crm/v8/coql", json={"select_query": query})
            found |= {str(row[self._key_field]): row for row in (body or {}).get("data") or []}
        return found

    def _raise_item(self, item: dict[str, Any]) -> None:
        if item.get("status") == "success":
            return
        code = str(item.get("code") or "")
        if code == "INVALID_DATA" and (item.get("details") or {}).get("api_name") == "id":
            raise NotFoundError("no record with that id", provider=self.slug, provider_code=code)
        cls = _class_for(code, 400) or InvalidRequestError
        raise cls("the record was refused", provider=self.slug, status_code=400, provider_code=code or None,
                  fields=_item_fields(item))

    def _url(self, obj: CrmObject, record_id: str) -> str:
        # The web UI sits beside the API host: www.zohoapis.eu -> crm.zoho.eu (zohoapis.ca -> crm.zohocloud.ca).
        api = str(self.client.base_url.host)
        suffix = api.removeprefix("www.zohoapis.") if api.startswith("www.zohoapis.") else "com"
        host = "crm.zohocloud.ca" if suffix == "ca" else f"crm.zoho.{suffix}"
        org = self.config.get("org_id")
        return f"https://{host}/crm/{f'{org}/' if org else ''}tab/{MODULES[obj]}/{record_id}"



# Zoho's per-field codes (`details.api_name` names the field) in the taxonomy's terms.
_FIELD_CODES = {"MANDATORY_NOT_FOUND": "required", "INVALID_DATA": "invalid", "READ_ONLY_FIELD": "read_only"}


def _item_fields(item: dict[str, Any]) -> dict[str, str]:
    """`{"code": "MANDATORY_NOT_FOUND", "details": {"api_name": "Last_Name"}}` → {"Last_Name": "required"}."""
    code, name = str(item.get("code") or ""), (item.get("details") or {}).get("api_name")
    return field_problems([(name, _FIELD_CODES[code])]) if code in _FIELD_CODES else {}


def _class_for(code: str | None, status: int) -> type[DriverError] | None:
    if code in _AUTH_CODES:
        return AuthError
    if code in _CONFLICT_CODES:
        return ConflictError
    if code in _LIMIT_CODES or status == 429:
        return RateLimitedError
    return None

