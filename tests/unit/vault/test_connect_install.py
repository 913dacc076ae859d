"""The installer at connect time: a HubSpot portal without our properties, whose app may not create them, is not
`active` after a passing connection test; once the scope is granted, a retest creates them and activates it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from settings import Settings
from store import installs
from tests.unit.vault.support import make_tenant
from tests.unit.vault.test_connect import Stack, callback, make_stack, operator, start, tenant_row


@pytest.fixture
async def fresh_hubspot(settings: Settings, engine: AsyncEngine,
                        sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[Stack]:
    async with make_stack("hubspot", settings, engine, sessions) as built:
        built.state.installed, built.state.schema_write = False, False  # type: ignore[attr-defined]
        yield built


async def test_connect_holds_the_tenant_until_exactly_once_create_is_possible(
        fresh_hubspot: Stack, sessions: async_sessionmaker[AsyncSession]) -> None:
    stack = fresh_hubspot
    tenant = await make_tenant(sessions, "hubspot", status="pending")
    got = await start(stack, tenant)
    held = await callback(stack, {"code": got["code"][0], "state": got["state"][0]})
    assert held.json()["status"] == "pending" and held.json()["reason"] == installs.PENDING_REASON
    assert (await tenant_row(sessions, tenant)).status == "pending"
    report = (await stack.api.get(f"/api/operator/tenants/{tenant}/install", headers=operator(stack.settings))).json()
    assert report["state"] == "manual_steps"

    stack.state.schema_write = True  # type: ignore[attr-defined]  # the admin grants crm.schemas.*.write
    retested = await stack.api.post(f"/api/operator/tenants/{tenant}/connect/test", headers=operator(stack.settings))
    assert retested.json()["status"] == "active" and retested.json()["reason"] is None
    names = {p["name"] for p in stack.state.property_definitions("contacts")}  # type: ignore[attr-defined]
    assert {"crm_sor_idempotency_key", "crm_sor_fingerprint"} <= names
