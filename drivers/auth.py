"""httpx auth flows for drivers: API key, static bearer, and OAuth2 with an injected token source.

`OAuth2Auth` never talks to a token endpoint itself: it asks a `TokenSource` for the current token and,
on a 401, for a refreshed one, exactly once per request. Persistence and cross-process single-flight are
the source's job (the vault plugs in a persistent source); `OAuthTokenSource` is the in-memory one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from drivers.errors import AuthError, UnavailableError
from drivers.transport import OutboundRefusedError

__all__ = [
    "ApiKeyAuth",
    "BearerAuth",
    "GrantTokenSource",
    "HeaderAuth",
    "OAuth2Auth",
    "OAuthTokenSource",
    "TokenSet",
    "TokenSource",
    "json_or_empty",
]


class ApiKeyAuth(httpx.Auth):
    """A static key in a header (default `Authorization: <prefix> <key>`) or a query parameter."""

    def __init__(
        self,
        key: str,
        *,
        header: str = "Authorization",
        prefix: str | None = None,
        query_param: str | None = None,
    ) -> None:
        self._key, self._header, self._prefix, self._query_param = key, header, prefix, query_param

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._query_param:
            request.url = request.url.copy_merge_params({self._query_param: self._key})
        else:
            request.headers[self._header] = f"{self._prefix} {self._key}" if self._prefix else self._key
        yield request


class BearerAuth(httpx.Auth):
    """A static bearer token (HubSpot private-app tokens, long-lived integration tokens)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


class TokenSource(Protocol):
    """Where OAuth2Auth gets access tokens."""

    async def current(self) -> str:
        """The access token to use now (refreshing first if the source knows it has expired)."""
        ...

    async def refreshed(self, stale: str) -> str:
        """A token newer than `stale`; refresh only if `stale` is still the current one (single-flight).

        Raises AuthError when the refresh is refused (revoked/invalid grant).
        """
        ...


class OAuth2Auth(httpx.Auth):
    """OAuth2 bearer flow answering a 401 with exactly one refresh and one resend per request."""

    def __init__(self, token_source: TokenSource, *, scheme: str = "Bearer") -> None:
        self._source = token_source
        self._scheme = scheme  # Zoho says "Zoho-oauthtoken"

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("OAuth2Auth supports httpx.AsyncClient only")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        sent_with = await self._source.current()
        request.headers["Authorization"] = f"{self._scheme} {sent_with}"
        response = yield request
        if response.status_code != 401:
            return
        fresh = await self._source.refreshed(sent_with)
        request.headers["Authorization"] = f"{self._scheme} {fresh}"
        # A second 401 goes back to the driver, which maps it to AuthError: no refresh loop.
        yield request


@dataclass(frozen=True)
class TokenSet:
    """What a token endpoint returned; handed to `on_rotate` so it can be persisted (encrypted).

    The tokens are left out of repr(): a TokenSet in a log line or a traceback must not leak them.
    """

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_in: int | None  # None for Salesforce, which never says
    instance_url: str | None = None  # the API host the token response names (`instance_url` or `api_domain`)
    rotated_refresh_token: bool = False

    @classmethod
    def from_response(cls, body: dict[str, Any], previous_refresh: str = "") -> TokenSet:
        """Parse a token endpoint's JSON answer. `expires_in` may arrive as a string ("3600"): coerce it; the
        API host comes as `instance_url` or `api_domain`; no refresh token in the answer keeps `previous_refresh`.
        """
        new_refresh = body.get("refresh_token")
        expires_in = body.get("expires_in")
        host = body.get("instance_url") or body.get("api_domain")
        return cls(
            access_token=str(body["access_token"]),
            refresh_token=str(new_refresh or previous_refresh),
            expires_in=int(float(expires_in)) if expires_in not in (None, "") else None,
            instance_url=str(host) if host else None,
            rotated_refresh_token=bool(new_refresh) and bool(previous_refresh) and new_refresh != previous_refresh,
        )


RotateHook = Callable[[TokenSet], Awaitable[None]]


class GrantTokenSource:
    """In-memory token source over any grant: single-flight (one asyncio.Lock), refreshed ahead of a stated
    expiry. `grant` asks the provider for a new TokenSet (a refresh-token grant, client credentials, a login).

    Used where no vault is involved (the contract suite, benches); vault-opened drivers get the persistent
    source, which calls the driver's `grant_token` under a row lock instead.
    """

    # Refresh this long before a stated expiry so an in-flight request does not race the deadline.
    EXPIRY_MARGIN_SECONDS = 60.0

    def __init__(
        self,
        grant: Callable[[], Awaitable[TokenSet]],
        *,
        access_token: str | None = None,
        expires_in: int | None = None,
        on_rotate: RotateHook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._grant, self._access_token, self._on_rotate, self._clock = grant, access_token, on_rotate, clock
        self._expires_at = self._deadline(expires_in) if access_token else None
        self._lock = asyncio.Lock()
        self.refresh_count = 0
        self.instance_url: str | None = None

    async def current(self) -> str:
        token = self._access_token
        if token is not None and not self._expired():
            return token
        return await self.refreshed(token or "")

    async def refreshed(self, stale: str) -> str:
        async with self._lock:
            if self._access_token is not None and self._access_token != stale and not self._expired():
                return self._access_token  # someone refreshed while we waited for the lock
            tokens = await self._grant()
            self._access_token = tokens.access_token
            self._expires_at = self._deadline(tokens.expires_in)
            self.instance_url = tokens.instance_url or self.instance_url
            self.refresh_count += 1
            self._granted(tokens)
            if self._on_rotate is not None:
                await self._on_rotate(tokens)
            return tokens.access_token

    def _granted(self, tokens: TokenSet) -> None:
        """Hook for subclasses that keep more of the grant's answer."""

    def _deadline(self, expires_in: int | None) -> float | None:
        return None if expires_in is None else self._clock() + expires_in - self.EXPIRY_MARGIN_SECONDS

    def _expired(self) -> bool:
        return self._expires_at is not None and self._clock() >= self._expires_at


class OAuthTokenSource(GrantTokenSource):
    """In-memory refresh-token source.

    Posts `grant_type=refresh_token` with client credentials in the form body (HubSpot v3 and
    Salesforce both accept that), keeps a rotated refresh token when the endpoint issues one, and
    refreshes ahead of `expires_in` when the provider states it (HubSpot: a 401 is "not a valid
    indicator" of expiry). A refused grant raises AuthError (a human must reconnect); a token endpoint
    that is down raises UnavailableError, because retrying later can succeed without anyone.
    """

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        access_token: str | None = None,
        expires_in: int | None = None,
        provider: str = "oauth",
        http: httpx.AsyncClient | None = None,
        on_rotate: RotateHook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(self._refresh, access_token=access_token, expires_in=expires_in, on_rotate=on_rotate,
                         clock=clock)
        self._token_url, self._client_id, self._client_secret = token_url, client_id, client_secret
        self._refresh_token, self._provider, self._http = refresh_token, provider, http

    @property
    def refresh_token(self) -> str:
        return self._refresh_token

    def _granted(self, tokens: TokenSet) -> None:
        self._refresh_token = tokens.refresh_token

    async def _refresh(self) -> TokenSet:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": self._refresh_token,
            "client_id": self._client_id,
            "client_secret": self._client_secret,
        }
        try:
            if self._http is not None:
                response = await self._http.post(self._token_url, data=form)
            else:
                async with httpx.AsyncClient(timeout=10.0) as http:
                    response = await http.post(self._token_url, data=form)
        except OutboundRefusedError as exc:  # a token URL the SSRF guard refuses: reconnecting must fix it
            raise AuthError(exc.reason, provider=self._provider, provider_code="outbound_refused") from exc
        except httpx.TransportError as exc:
            raise UnavailableError(
                f"token endpoint unreachable ({type(exc).__name__})", provider=self._provider
            ) from exc
        body = json_or_empty(response)
        if response.status_code >= 500:
            raise UnavailableError("token endpoint failed", provider=self._provider, status_code=response.status_code)
        if response.status_code != 200 or "access_token" not in body:
            code = body.get("error") or body.get("status")
            raise AuthError(
                "token refresh refused",
                provider=self._provider,
                status_code=response.status_code,
                provider_code=str(code) if code else None,
            )
        return TokenSet.from_response(body, self._refresh_token)


def json_or_empty(response: httpx.Response) -> dict[str, Any]:
    """The JSON object a (token) endpoint answered, or {} for anything else (HTML, a list, nothing)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class HeaderAuth(httpx.Auth):
    """Static headers on every request around another auth flow (Mindbody's Api-Key + SiteId beside its staff
    token, Toast's restaurant header beside its bearer). The inner flow's 401 handling is kept as is."""

    def __init__(self, inner: httpx.Auth, headers: dict[str, str]) -> None:
        self._inner, self._headers = inner, headers

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("HeaderAuth supports httpx.AsyncClient only")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers.update(self._headers)
        flow = self._inner.async_auth_flow(request)
        outgoing = await flow.__anext__()
        while True:
            response = yield outgoing
            try:
                outgoing = await flow.asend(response)
            except StopAsyncIteration:
                return
