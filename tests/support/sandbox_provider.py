"""A `DriverProvider` for tests and benchmarks: each tenant's driver talks to a provider sandbox.

The tenant row decides the provider (as in production); the driver gets an httpx client whose transport
reaches the sandbox — in-process through `httpx.ASGITransport`, or a loopback URL when the sandbox runs as
a server (another process must reach it) — authenticated with the sandbox's own OAuth token source.
No vault, no credential rows: this stands in for `vault.provider.VaultDriverProvider` where a test is
about something else than credentials.

    provider = SandboxDriverProvider(sessions)           # sandboxes created on first use
    async with provider.open(tenant_id, actor) as driver:
        ...
    provider.state("hubspot").records["contacts"]        # what the CRM now holds
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from drivers.auth import OAuth2Auth, OAuthTokenSource
from drivers.base import BaseDriver
from drivers.registry import get_driver_class
from sandboxes import hubspot as hubspot_sandbox
from sandboxes import salesforce as salesforce_sandbox
from sandboxes.common import SandboxState
from store.models import Tenant
from tests.support import sandbox_provider_13
from vault.connections import Actor

SANDBOX_APPS: dict[str, Callable[[], Starlette]] = {
    "hubspot": hubspot_sandbox.create_app,
    "salesforce": salesforce_sandbox.create_app,
    **sandbox_provider_13.APPS,
}
TOKEN_PATHS = {"hubspot": "/oauth/v1/token", "salesforce": "/services/oauth2/token"}

TransportWrapper = Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport]


class SandboxDriverProvider:
    """Implements `vault.connections.DriverProvider` against provider sandboxes.

    Args:
        sessions: where tenants live (`tenants.provider`, `tenants.settings`, `tenants.status`).
        apps: sandbox apps by slug (created with the sandbox's `create_app()` when missing).
        urls: loopback base URLs by slug, for sandboxes served by another process; these win over `apps`.
        wrap: wraps every transport (fault injection: drop a response, kill the process after a call…).

    Attributes:
        opened: how many drivers were handed out; `actors` records who asked, in order.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, apps: dict[str, Starlette] | None = None,
                 urls: dict[str, str] | None = None, wrap: TransportWrapper | None = None) -> None:
        self._sessions = sessions
        self._apps: dict[str, Starlette] = dict(apps or {})
        self._urls = dict(urls or {})
        self._wrap = wrap
        self._sources: dict[uuid.UUID, OAuthTokenSource] = {}
        self._token_http: dict[str, httpx.AsyncClient] = {}
        self.opened = 0
        self.actors: list[Actor] = []

    def app(self, slug: str) -> Starlette:
        if slug not in self._apps:
            self._apps[slug] = SANDBOX_APPS[slug]()
        return self._apps[slug]

    def state(self, slug: str) -> Any:
        """The sandbox's state object (HubSpotState, SalesforceState) for in-process sandboxes."""
        state: SandboxState = self.app(slug).state.sandbox
        return state

    def _transport(self, slug: str) -> httpx.AsyncBaseTransport:
        inner: httpx.AsyncBaseTransport = (httpx.AsyncHTTPTransport() if slug in self._urls
                                           else httpx.ASGITransport(app=self.app(slug)))
        return self._wrap(inner) if self._wrap else inner

    def _config(self, slug: str, settings: dict[str, Any]) -> dict[str, Any]:
        config = dict(settings)
        if slug in self._urls:
            config["base_url"] = self._urls[slug]
            config["token_url"] = self._urls[slug] + TOKEN_PATHS[slug]
            if slug == "salesforce":
                config["instance_url"] = self._urls[slug]
        elif slug == "salesforce":
            config.setdefault("instance_url", self.state(slug).instance_url)
        return config

    async def _credentials(self, slug: str) -> dict[str, str]:
        if slug in self._urls:
            async with httpx.AsyncClient(base_url=self._urls[slug]) as http:
                response = await http.post("/__sandbox__/credentials")
                response.raise_for_status()
                credentials: dict[str, str] = response.json()
                return credentials
        creds = self.state(slug).tokens.credentials()
        return {"client_id": creds.client_id, "client_secret": creds.client_secret,
                "refresh_token": creds.refresh_token, "access_token": creds.access_token}

    async def _source(self, tenant_id: uuid.UUID, cls: type[BaseDriver], config: dict[str, Any]
                      ) -> OAuthTokenSource:
        # One source per tenant, like the vault's: concurrent drivers share its single-flight refresh.
        if tenant_id not in self._sources:
            slug = cls.slug
            if slug not in self._token_http:
                self._token_http[slug] = httpx.AsyncClient(transport=self._transport(slug))
            creds = await self._credentials(slug)
            self._sources[tenant_id] = OAuthTokenSource(
                token_url=str(cls.oauth_token_url(config)), client_id=creds["client_id"],
                client_secret=creds["client_secret"], refresh_token=creds["refresh_token"],
                access_token=creds["access_token"], provider=slug, http=self._token_http[slug])
        return self._sources[tenant_id]

    @asynccontextmanager
    async def open(self, tenant_id: uuid.UUID, actor: Actor) -> AsyncIterator[BaseDriver]:
        async with self._sessions() as session:
            tenant = await session.get(Tenant, tenant_id)
        if tenant is None or tenant.status == "disabled":
            raise LookupError(f"no active tenant {tenant_id}")
        cls = get_driver_class(tenant.provider)
        config = self._config(tenant.provider, dict(tenant.settings or {}))
        auth: httpx.Auth
        if cls.slug in sandbox_provider_13.STATIC:  # static credentials: no OAuth source (issue 13's drivers)
            secret, extra = sandbox_provider_13.STATIC[cls.slug](self.state(cls.slug))
            config = extra | config
            auth = cls.build_auth(secret, config, lambda: None)
        else:
            auth = OAuth2Auth(await self._source(tenant_id, cls, config))
        self.opened += 1
        self.actors.append(actor)
        async with httpx.AsyncClient(base_url=cls.api_base_url(config), transport=self._transport(cls.slug),
                                     auth=auth) as client:
            yield cls(client, config)

    async def aclose(self) -> None:
        for http in self._token_http.values():
            await http.aclose()
        self._token_http.clear()
        self._sources.clear()
