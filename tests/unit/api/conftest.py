"""Fixtures for the API tests: a sandbox-backed DriverProvider, a connected tenant and an app client."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.context import AppContext
from settings import Settings
from tests.unit.api.support import SandboxProvider, client_for, context, make_tenant


@pytest.fixture
def provider() -> SandboxProvider:
    return SandboxProvider()


@pytest_asyncio.fixture(loop_scope="session")
async def tenant(sessions: async_sessionmaker[AsyncSession], provider: SandboxProvider) -> uuid.UUID:
    """An active tenant (a row) whose HubSpot sandbox is connected."""
    tenant_id = await make_tenant(sessions)
    provider.connect(tenant_id)
    return tenant_id


@pytest.fixture
def ctx(settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        provider: SandboxProvider) -> AppContext:
    return context(settings, engine, sessions, provider)


@pytest_asyncio.fixture(loop_scope="session")
async def api(ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(ctx) as client:
        yield client
