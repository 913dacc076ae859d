"""Fixtures for API tests on the sandbox-backed `SandboxDriverProvider` (every provider's sandbox, real HTTP
through httpx), instead of conftest's single-HubSpot `SandboxProvider`. A test module opts in with
`from tests.unit.api.sandbox_drivers import api, drivers  # noqa: F401` (pytest finds imported fixtures)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from settings import Settings
from tests.support.sandbox_provider import SandboxDriverProvider
from tests.unit.api.support import client_for, context


@pytest_asyncio.fixture(loop_scope="session")
async def drivers(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[SandboxDriverProvider]:
    provider = SandboxDriverProvider(sessions)
    yield provider
    await provider.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def api(settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
              drivers: SandboxDriverProvider) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(context(settings, engine, sessions, drivers)) as client:
        yield client
