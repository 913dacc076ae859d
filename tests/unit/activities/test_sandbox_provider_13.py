"""SandboxDriverProvider hands out issue 13's drivers (static credentials) wired to their sandboxes."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from drivers.base import CrmObject
from tests.support.sandbox_provider import SandboxDriverProvider
from tests.support.tenants import create_tenant
from vault.connections import Actor

ACTOR = Actor(type="system", id="test", purpose="sandbox provider test")
FIELDS = {"odoo": {"name": "Ada Sandboxed"}, "generic_rest": {"last_name": "Sandboxed"},
          "custom_webhook": {"last_name": "Sandboxed"}}


@pytest.mark.parametrize("slug", sorted(FIELDS))
async def test_static_credential_drivers_reach_their_sandboxes(sessions: async_sessionmaker[AsyncSession],
                                                               slug: str) -> None:
    provider = SandboxDriverProvider(sessions)
    tenant = await create_tenant(sessions, provider=slug)
    try:
        async with provider.open(tenant, ACTOR) as driver:
            assert driver.slug == slug and (await driver.test_connection()).ok
            created = await driver.create_record(CrmObject.CUSTOMER, FIELDS[slug], "k-1")
            record = await driver.get_record(CrmObject.CUSTOMER, created.external_id)
        assert all(record.fields[k] == v for k, v in FIELDS[slug].items())
    finally:
        await provider.aclose()
