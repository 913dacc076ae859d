"""Tenants for tests: a fresh row per test (tests share one database, so never truncate)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.models import Tenant


async def create_tenant(sessions: async_sessionmaker[AsyncSession], *, provider: str = "hubspot",
                        status: str = "active", settings: dict[str, Any] | None = None,
                        name: str = "Test tenant") -> uuid.UUID:
    tenant_id = uuid.uuid4()
    async with sessions() as session, session.begin():
        session.add(Tenant(id=tenant_id, name=name, provider=provider, status=status, settings=settings or {}))
    return tenant_id
