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

from drivers.auth import GrantTokenSource, TokenSet
from drivers.base import BaseDriver
from drivers.registry import get_driver_class
from sandboxes import hubspot as hubspot_sandbox
from sandboxes import mindbody as mindbody_sandbox
from sandboxes import salesforce as salesforce_sandbox
from sandboxes import tekmetric as tekmetric_sandbox
from sandboxes import toast as toast_sandbox
from sandboxes.athenahealth import app as athena_sandbox
from sandboxes.common import SandboxState
from sandboxes.zoho import app as zoho_sandbox
from store.models import Tenant
from tests.support import sandbox_provider_13
from vault.connections import Actor

SANDBOX_APPS: dict[str, Callable[[], Starlette]] = {
    "hubspot": hubspot_sandbox.create_app,
    "salesforce": salesforce_sandbox.create_app,
    "zoho": zoho_sandbox.create_app,
    "athenahealth": athena_sandbox.create_app,
    "mindbody": mindbody_sandbox.create_app,
    "tekmetric": tekmetric_sandbox.create_app,
    "toast": toast_sandbox.create_app,
    **sandbox_provider_13.APPS,
}
TOKEN_PATHS = {"hubspot": "/oauth/v3/token", "salesforce": "/services/oauth2/token", "zoho": "/oauth/v2/token",
               "athenahealth": "/oauth2/v1/token", "mindbody": mindbody_sandbox.TOKEN_PATH,
               "tekmetric": tekmetric_sandbox.TOKEN_PATH, "toast": toast_sandbox.LOGIN_PATH}
# What a connect form would have put in a tenant's settings, for sandboxes' default accounts.
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "mindbody": {"site_id": mindbody_sandbox.MindbodyState.site_id},
    "tekmetric": {"shop_id": tekmetric_sandbox.TekmetricState.shop_id, "environment": "sandbox"},
    "toast": {"restaurant_guid": toast_sandbox.ToastState.restaurant_guid, "environment": "sandbox"},
}


def credential_blob(slug: str, creds: dict[str, str]) -> dict[str, Any]:
    """The blob the vault would hold for a sandbox's default account after its first token grant."""
    if slug == "mindbody":  # the sandbox's staff login is its grant client
        return {"auth": "token", "api_key": mindbody_sandbox.MindbodyState.api_key, "username": creds["client_id"],
                "password": creds["client_secret"], "access_token": creds["access_token"]}
    if slug in ("tekmetric", "toast", "athenahealth"):  # client-credentials grants
        return {"auth": "token", "client_id": creds["client_id"], "client_secret": creds["client_secret"],
                "access_token": creds["access_token"]}
    return {"auth": "oauth2", "access_token": creds["access_token"], "refresh_token": creds["refresh_token"]}

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
        self._sources: dict[uuid.UUID, tuple[GrantTokenSource, dict[str, Any]]] = {}
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
        config = DEFAULT_SETTINGS.get(slug, {}) | dict(settings)
        if slug in self._urls:
            config["base_url"] = self._urls[slug] + ("/public/v6" if slug == "mindbody" else "")
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
                      ) -> tuple[GrantTokenSource, dict[str, Any]]:
        # One source per tenant, like the vault's: concurrent drivers share its single-flight grant, which is
        # the driver's own `grant_token` (refresh token, client credentials, a login) as in production.
        if tenant_id not in self._sources:
            slug = cls.slug
            if slug not in self._token_http:
                self._token_http[slug] = httpx.AsyncClient(transport=self._transport(slug))
            creds = await self._credentials(slug)
            blob = credential_blob(slug, creds)
            http, client = self._token_http[slug], (creds["client_id"], creds["client_secret"])

            async def grant() -> TokenSet:
                tokens = await cls.grant_token(http, blob, config, client)
                blob["access_token"] = tokens.access_token
                if tokens.refresh_token:
                    blob["refresh_token"] = tokens.refresh_token
                return tokens

            self._sources[tenant_id] = (GrantTokenSource(grant, access_token=creds["access_token"]), blob)
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
        if cls.slug in sandbox_provider_13.STATIC:  # static credentials: no token grant (issue 13's drivers)
            secret, extra = sandbox_provider_13.STATIC[cls.slug](self.state(cls.slug))
            config = extra | config
            auth = cls.build_auth(secret, config, lambda: None)
        else:
            source, blob = await self._source(tenant_id, cls, config)
            auth = cls.build_auth(blob, config, lambda: source)
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
