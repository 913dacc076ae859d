"""Helpers for the API tests: a DriverProvider over in-process HubSpot sandboxes (one CRM per tenant),
app clients over httpx's ASGI transport, tenants and keys.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from api.app import create_app
from api.auth import mint_token
from api.context import AppContext
from api.keys import IssuedKey, create_api_key
from api.temporal import TemporalGateway
from drivers.auth import BearerAuth
from drivers.base import BaseDriver
from drivers.hubspot import HubSpotDriver
from sandboxes import hubspot as hubspot_sandbox
from settings import Settings, TemporalSettings
from store.models import Tenant
from vault.connections import Actor, DriverProvider


@dataclass
class SandboxProvider:
    """DriverProvider with one HubSpot sandbox per connected tenant; records every actor it was asked for.

    `gate`, when set, makes create_record wait for it (to hold a request "still running").
    """

    crms: dict[uuid.UUID, Starlette] = field(default_factory=dict)
    actors: list[tuple[uuid.UUID, Actor]] = field(default_factory=list)
    gate: asyncio.Event | None = None
    entered: asyncio.Event = field(default_factory=asyncio.Event)

    def connect(self, tenant_id: uuid.UUID) -> hubspot_sandbox.HubSpotState:
        app = hubspot_sandbox.create_app()
        self.crms[tenant_id] = app
        state: hubspot_sandbox.HubSpotState = app.state.sandbox
        return state.instant_search()  # tests about search lag and limits turn them back on

    def state(self, tenant_id: uuid.UUID) -> hubspot_sandbox.HubSpotState:
        state: hubspot_sandbox.HubSpotState = self.crms[tenant_id].state.sandbox
        return state

    @asynccontextmanager
    async def open(self, tenant_id: uuid.UUID, actor: Actor) -> AsyncIterator[BaseDriver]:
        self.actors.append((tenant_id, actor))
        app = self.crms.get(tenant_id)
        if app is None:
            raise LookupError(f"tenant {tenant_id} has no connected CRM")
        state = self.state(tenant_id)
        token = getattr(state, "_api_token", None) or state.tokens.issue_access()
        state._api_token = token  # type: ignore[attr-defined]  # one token per tenant, so expire_all() bites
        async with httpx.AsyncClient(base_url=HubSpotDriver.base_url, transport=httpx.ASGITransport(app=app),
                                     auth=BearerAuth(token)) as client:
            driver = HubSpotDriver(client, {"portal_id": state.portal_id})
            if self.gate is not None:
                yield _Gated(driver, self)
            else:
                yield driver


class _Gated(HubSpotDriver):
    """The real driver, whose create waits for the test to open the gate."""

    def __init__(self, inner: HubSpotDriver, provider: SandboxProvider) -> None:
        super().__init__(inner.client, inner.config)
        self._provider = provider

    async def create_record(self, object: Any, fields: Any, idempotency_key: str) -> Any:
        self._provider.entered.set()
        assert self._provider.gate is not None
        await self._provider.gate.wait()
        return await super().create_record(object, fields, idempotency_key)


def context(settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
            drivers: DriverProvider | None) -> AppContext:
    ctx = AppContext(settings=settings, engine=engine, sessions=sessions,
                     temporal=TemporalGateway(TemporalSettings(address="127.0.0.1:1")))
    if drivers is not None:
        ctx.extras["drivers"] = drivers
    return ctx


@asynccontextmanager
async def client_for(ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the app; closes what the app built lazily (the limiter's Redis pool)."""
    app = create_app(context=ctx)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            yield client
    finally:
        limiter = ctx.extras.pop("ratelimiter", None)
        if limiter is not None:
            await limiter.aclose()


def agent_headers(settings: Settings, tenant_id: uuid.UUID, subject: str = "agent-7") -> dict[str, str]:
    return {"authorization": f"Bearer {mint_token(settings, subject=subject, role='agent', tenant_id=tenant_id)}"}


async def make_tenant(sessions: async_sessionmaker[AsyncSession], *, status: str = "active",
                      name: str = "Acme Realty") -> uuid.UUID:
    async with sessions.begin() as session:
        tenant = Tenant(name=name, provider="hubspot", status=status)
        session.add(tenant)
        await session.flush()
        return tenant.id


async def make_key(sessions: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID,
                   scopes: tuple[str, ...] = ("crm:write",)) -> IssuedKey:
    return await create_api_key(sessions, tenant_id, "test key", scopes)


def key_headers(key: IssuedKey | str) -> dict[str, str]:
    return {"authorization": f"Bearer {key if isinstance(key, str) else key.key}"}
