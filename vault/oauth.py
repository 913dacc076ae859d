"""OAuth connect wire steps: authorize URLs with state and PKCE, and the authorization-code exchange.

The provider's facts (authorize URL, scopes, PKCE) are the driver's `oauth` (`drivers.provider.OAuthApp`) and
its token endpoint is the driver's `oauth_token_url(config)`, so the refresh path and the connect path agree.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import timedelta
from urllib.parse import urlencode

import httpx

from drivers.auth import TokenSet, json_or_empty
from drivers.errors import AuthError, UnavailableError
from drivers.provider import OAuthApp

STATE_TTL = timedelta(minutes=10)


def state_hash(state: str) -> str:
    """Only this digest is stored: a database reader cannot complete someone's pending connect."""
    return hashlib.sha256(state.encode()).hexdigest()


def new_state() -> str:
    return secrets.token_urlsafe(32)


def new_code_verifier() -> str:
    return secrets.token_urlsafe(64)[:96]  # RFC 7636: 43–128 characters of [A-Za-z0-9-._~]


def code_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_url(meta: OAuthApp, base: str, *, client_id: str, redirect_uri: str, state: str,
                  code_verifier: str | None) -> str:
    """The URL the operator's browser opens: the driver's consent page for the tenant (`base`) with our query."""
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
              "scope": meta.scope_separator.join(meta.scopes), "state": state, **dict(meta.extra_params)}
    if code_verifier is not None:
        params |= {"code_challenge": code_challenge(code_verifier), "code_challenge_method": "S256"}
    return f"{base}?{urlencode(params)}"


async def exchange_code(http: httpx.AsyncClient, *, provider: str, token_url: str, client_id: str,
                        client_secret: str, code: str, redirect_uri: str, code_verifier: str | None) -> TokenSet:
    """The authorization-code grant (form-encoded, client credentials in the body, RFC 6749 §4.1.3)."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "client_id": client_id, "client_secret": client_secret}
    if code_verifier is not None:
        form["code_verifier"] = code_verifier
    try:
        response = await http.post(token_url, data=form)
    except httpx.TransportError as exc:
        raise UnavailableError(f"token endpoint unreachable ({type(exc).__name__})", provider=provider) from None
    body = json_or_empty(response)
    if response.status_code >= 500:
        raise UnavailableError("token endpoint failed", provider=provider, status_code=response.status_code)
    if response.status_code != 200 or not body.get("access_token"):
        code_name = body.get("error")
        raise AuthError("authorization code refused", provider=provider, status_code=response.status_code,
                        provider_code=str(code_name) if code_name else None)
    return TokenSet.from_response(body)
