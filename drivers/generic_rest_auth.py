"""The generic REST connector's auth: the httpx flow for each configured type, and the client-credentials grant."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from drivers.auth import ApiKeyAuth, BearerAuth, OAuth2Auth, TokenSet, TokenSource
from drivers.errors import AuthError, UnavailableError


def auth_for(slug: str, secret: Mapping[str, Any], tokens: Any) -> httpx.Auth:
    """The flow for the blob's `auth_config` (`tokens()`: the vault's persistent source, for client credentials)."""
    auth = dict(secret.get("auth_config") or {})
    kind = auth.get("type")
    if kind == "none":
        return httpx.Auth()  # the base flow sends the request unchanged
    if kind == "api_key":
        query = auth.get("placement") == "query"
        return ApiKeyAuth(str(auth["key"]), header=str(auth.get("name") or "X-Api-Key"), prefix=auth.get("prefix"),
                          query_param=str(auth["name"]) if query else None)
    if kind == "bearer":
        return BearerAuth(str(auth["token"]))
    if kind == "basic":
        return httpx.BasicAuth(str(auth["username"]), str(auth.get("password") or ""))
    if kind == "oauth2_client_credentials":
        source: TokenSource = tokens()
        return OAuth2Auth(source)
    raise AuthError("the stored credential has no usable generic REST auth", provider=slug)


async def client_credentials(slug: str, http: httpx.AsyncClient, secret: Mapping[str, Any],
                             config: Mapping[str, Any]) -> TokenSet:
    """RFC 6749 §4.4 with the tenant's client (HTTP Basic or form client authentication)."""
    auth = dict(secret.get("auth_config") or {})
    form = {"grant_type": "client_credentials"} | ({"scope": auth["scope"]} if auth.get("scope") else {})
    basic = None
    if auth.get("client_auth", "basic") == "basic":
        basic = httpx.BasicAuth(str(auth.get("client_id")), str(auth.get("client_secret")))
    else:
        form |= {"client_id": str(auth.get("client_id")), "client_secret": str(auth.get("client_secret"))}
    token_url = str(config.get("token_url") or auth.get("token_url") or "")
    try:
        response = await http.post(token_url, data=form, auth=basic or httpx.USE_CLIENT_DEFAULT)
    except httpx.TransportError as exc:
        raise UnavailableError(f"token endpoint unreachable ({type(exc).__name__})", provider=slug) from exc
    try:
        body = response.json() if response.content else {}
    except ValueError:
        body = {}
    if response.status_code >= 500:
        raise UnavailableError("token endpoint failed", provider=slug, status_code=response.status_code)
    if response.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
        code = body.get("error") if isinstance(body, dict) else None
        raise AuthError("client credentials refused", provider=slug, status_code=response.status_code,
                        provider_code=str(code)[:64] if code else None)
    expires = body.get("expires_in")  # some servers send it as a string
    return TokenSet(access_token=str(body["access_token"]), refresh_token="",
                    expires_in=int(float(expires)) if expires not in (None, "") else None)
