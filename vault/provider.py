"""`VaultDriverProvider`: the `DriverProvider` that hands activities and routes a ready, authenticated driver.

`open(tenant_id, actor)` loads the tenant (provider slug and `tenants.settings`), decrypts its credential
as `actor` (audited), builds an httpx client for the driver's base URL with the driver's auth flow (`build_auth`:
tokens from the vault's persistent single-flight token source, or a static bearer / API key) and closes it
afterwards. The tenant row and the decrypted credential are the ones this process read within the last few seconds
(`store/cache.py`): a change made here (`forget_tenant`, the vault's writes) takes effect at once, one made by
another process within `CONFIG_TTL_SECONDS`. Its own clients send through `drivers.transport.SafeTransport` (SSRF
guard: resolved, checked and pinned addresses, capped responses, no redirects followed), and `open_with` checks the
tenant's configured URLs first, so a tenant pointing us at a private or metadata address gets a clear refusal before
any connection.
Tests point it at a sandbox with `transport=` (e.g. an ASGI transport) or a `client_factory` — those callers
own what their transport reaches, and pass `outbound=` to keep the guard in front of it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from drivers.base import BaseDriver
from drivers.budget import ProviderBudget, attach
from drivers.errors import AuthError, InvalidRequestError
from drivers.registry import get_driver_class
from drivers.transport import HostPools, OutboundGuard, OutboundRefusedError, SafeTransport, config_urls
from settings import OAuthClientSettings, OutboundSettings, Settings
from store.cache import CONFIG_TTL_SECONDS, TtlCache
from store.models import Tenant
from store.phone_index import PhoneIndex
from telemetry import MeteredTransport, crm_call_metrics_hooks
from vault.connections import Actor
from vault.credentials import Credential, CredentialVault
from vault.indexed import IndexedDriver
from vault.tokens import PersistentTokenSource, TokenBroker

DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)

ClientFactory = Callable[[str, httpx.Auth | None], httpx.AsyncClient]


class UnknownTenantError(LookupError):
    """No tenant with that id."""


class TenantDisabledError(AuthError, LookupError):
    """The tenant is disabled: an auth error to drivers' callers, a lookup error to the protocol's callers."""


@dataclass(frozen=True)
class TenantConfig:
    """What a route needs to know about a tenant's connection, without any secret."""

    tenant_id: uuid.UUID
    provider: str
    status: str
    settings: dict[str, Any]


def driver_config(tenant: TenantConfig, credential: Credential) -> dict[str, Any]:
    """The tenant's provider settings plus what the credential knows (the API host its token response named).

    A setting pinned on the tenant (a dev sandbox URL) wins over the token response's.
    """
    config = dict(tenant.settings)
    if credential.secret.get("instance_url"):
        config.setdefault("instance_url", credential.secret["instance_url"])
    return config


class VaultDriverProvider:
    """Implements `vault.connections.DriverProvider` on top of the credential vault.

    Attributes:
        tokens: the per-process token broker (tests read `tokens.refreshes`).
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], vault: CredentialVault, *,
                 transport: httpx.AsyncBaseTransport | None = None, client_factory: ClientFactory | None = None,
                 timeout: httpx.Timeout = DEFAULT_TIMEOUT,
                 oauth_clients: Mapping[str, OAuthClientSettings] | None = None,
                 budget: ProviderBudget | None = None, outbound: OutboundGuard | None = None,
                 phone_index: PhoneIndex | None = None, cache_seconds: float = CONFIG_TTL_SECONDS,
                 reuse_connections: bool = False) -> None:
        self._sessions, self.vault, self.budget = sessions, vault, budget
        self.tenants: TtlCache[TenantConfig] = TtlCache(cache_seconds)  # see tenant()
        self.phone_index = phone_index  # when set, drivers come wrapped in it (vault/indexed.py)
        # The guard is always on for our own clients; an injected transport/factory is the caller's (tests),
        # guarded only when the caller also passes `outbound`.
        injected = transport is not None or client_factory is not None
        self.outbound: OutboundGuard | None = outbound if injected else (outbound or OutboundGuard())
        self._transport, self._timeout = transport, timeout
        # With `reuse_connections`, our own clients' connections outlive each client (drivers/transport.py:
        # HostPools) until aclose(): for a provider whose owner closes it (the API's, in its lifespan).
        self._connections: HostPools | None = HostPools() if reuse_connections and not injected else None
        self._injected_factory = client_factory
        clients = {slug: (app.client_id, app.client_secret.get_secret_value())
                   for slug, app in (oauth_clients or {}).items()}
        self.tokens = TokenBroker(vault, self.token_http, clients)

    @classmethod
    def from_settings(cls, settings: Settings, sessions: async_sessionmaker[AsyncSession], *,
                      reuse_connections: bool = False) -> VaultDriverProvider:
        """This process's provider: the vault from settings (raises CredentialKeyError without a usable key).

        `reuse_connections`: keep CRM connections across openings (see `HostPools`); the caller then owns the
        provider's `aclose()`, which closes them.
        """
        pacing = settings.provider_budget
        budget = ProviderBudget.from_url(settings.redis_url, tool_reserve=pacing.tool_reserve,
                                         fallback_share=pacing.fallback_share,
                                         tool_wait=pacing.tool_wait_seconds,
                                         background_wait=pacing.background_wait_seconds) if pacing.enabled else None
        return cls(sessions, CredentialVault.from_settings(settings, sessions), oauth_clients=settings.oauth_clients,
                   budget=budget, outbound=outbound_guard(settings.outbound),
                   phone_index=phone_index_from(settings, sessions), reuse_connections=reuse_connections)

    async def aclose(self) -> None:
        """Close what the provider holds across calls (the CRM connections, the budget's Redis pool)."""
        if self._connections is not None:
            await self._connections.aclose()
        if self.budget is not None:
            await self.budget.aclose()

    def _client(self, base_url: str, auth: httpx.Auth | None, provider: str | None = None) -> httpx.AsyncClient:
        """The injected factory's client (tests), else ours: guarded, and metered per provider so calls that got
        no answer at all (connect errors, timeouts) are counted beside the answered ones the hooks count."""
        if self._injected_factory is not None:
            return self._injected_factory(base_url, auth)
        # Redirects are never followed: a provider API does not redirect its API calls, and a hop is a
        # destination nobody checked at connect time.
        transport = self._transport
        if self.outbound is not None and self._connections is not None:  # ours: the shared connections
            transport = SafeTransport(self.outbound, self._connections, close_inner=False)
        elif self.outbound is not None:  # the caller's transport, guarded
            transport = SafeTransport(self.outbound, transport)
        if provider is not None:
            transport = MeteredTransport(transport or httpx.AsyncHTTPTransport(), provider)
        return httpx.AsyncClient(base_url=base_url, auth=auth, timeout=self._timeout, transport=transport,
                                 follow_redirects=False)

    def token_http(self) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        """A plain client (no auth flow) for token endpoints, through the same transport."""
        return self._client("", None)

    async def tenant(self, tenant_id: uuid.UUID) -> TenantConfig:
        """The tenant's row as this process read it within `tenants.ttl` seconds (a disable made by another
        process takes effect within that; callers that change the row here call `forget_tenant`)."""
        return await self.tenants.get((tenant_id,), lambda: self._read_tenant(tenant_id))

    async def _read_tenant(self, tenant_id: uuid.UUID) -> TenantConfig:
        async with self._sessions() as session:
            row = await session.get(Tenant, tenant_id)
        if row is None:
            raise UnknownTenantError(f"no tenant {tenant_id}")
        return TenantConfig(row.id, row.provider, row.status, dict(row.settings or {}))

    def forget_tenant(self, tenant_id: uuid.UUID) -> None:
        """The tenant's row changed (committed): the next `tenant()` reads it again."""
        self.tenants.invalidate(tenant_id)

    @asynccontextmanager
    async def open(self, tenant_id: uuid.UUID, actor: Actor) -> AsyncIterator[BaseDriver]:
        tenant = await self.tenant(tenant_id)
        if tenant.status == "disabled":
            raise TenantDisabledError(f"tenant {tenant_id} is disabled", provider=tenant.provider)
        credential, audit = await self.vault.opened(tenant_id, actor, provider=tenant.provider)
        try:
            async with self.open_with(tenant, credential, actor, audit=audit) as driver:
                yield driver
        finally:
            if audit is not None:  # written before we return, whether or not a request went out
                await asyncio.shield(audit)

    @asynccontextmanager
    async def open_with(self, tenant: TenantConfig, credential: Credential, actor: Actor, *,
                        audit: asyncio.Task[bool] | None = None) -> AsyncIterator[BaseDriver]:
        """A driver for an already decrypted credential (the connect flow tests one before activating).

        `audit`: the credential's audit row, still being written: no request leaves before it is.
        """
        if credential.needs_reconnect:
            raise AuthError("the connection needs to be reconnected", provider=tenant.provider)
        cls = get_driver_class(tenant.provider)
        config = driver_config(tenant, credential)
        await self.check_outbound(cls, config)
        auth = self._auth(cls, config, credential, actor)
        async with self._client(cls.api_base_url(config), auth, cls.slug) as client:
            if audit is not None:
                client.event_hooks["request"].insert(0, _after(audit))
            for hook, hooks in crm_call_metrics_hooks(cls.slug).items():  # CRM calls by provider and outcome
                client.event_hooks[hook].extend(hooks)
            if self.budget is not None:  # the agent's tool calls first; lifecycles and erasures share the rest
                attach(client, self.budget, tenant.tenant_id, cls, "tool" if actor.type == "tool" else "mirror")
            yield IndexedDriver.wrap(cls(client, config), self.phone_index, tenant.tenant_id)

    async def check_outbound(self, cls: type[BaseDriver], config: Mapping[str, Any]) -> None:
        """Refuse a tenant configuration whose URLs (base, token, instance, endpoint…) the guard refuses.

        Raises InvalidRequestError (code `outbound_refused`, the reason in its message): the connect flow's
        test reports it and the tenant stays pending. No connection is opened for a refused URL.
        """
        if self.outbound is None:
            return
        try:
            await self.outbound.check_urls(config_urls(cls.api_base_url(config), cls.oauth_token_url(config), config))
        except OutboundRefusedError as exc:
            raise InvalidRequestError(exc.reason, provider=cls.slug, provider_code="outbound_refused") from None

    def _auth(self, cls: type[BaseDriver], config: dict[str, Any], credential: Credential, actor: Actor
              ) -> httpx.Auth:
        def tokens() -> PersistentTokenSource:
            return self.tokens.source(credential, driver=cls, config=config, actor=actor)

        return cls.build_auth(credential.secret, config, tokens)


def _after(audit: asyncio.Task[bool]) -> Callable[[httpx.Request], Awaitable[None]]:
    """A request hook that waits for the audit write (shielded: a cancelled request leaves it running)."""
    async def wait(_: httpx.Request) -> None:
        await asyncio.shield(audit)

    return wait


def phone_index_from(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> PhoneIndex | None:
    """The process's phone index (None when `CRM_LOOKUP__INDEX_ENABLED` is off)."""
    if not settings.lookup.index_enabled:
        return None
    return PhoneIndex(sessions, settings.subject_hash_key.get_secret_value(),
                      timedelta(days=settings.lookup.index_ttl_days))


def outbound_guard(settings: OutboundSettings) -> OutboundGuard:
    """The process's SSRF guard from settings (`allow_loopback` only in dev/test: see settings)."""
    return OutboundGuard(allow_loopback=settings.allow_loopback, max_response_bytes=settings.max_response_bytes,
                         total_timeout=settings.timeout_seconds)
