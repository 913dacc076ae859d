from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from drivers.base import CrmObject
from tests.support.sandbox_provider import SandboxDriverProvider
from tests.support.tenants import create_tenant
from vault.connections import Actor

ACTOR = Actor(type="system", id="test", purpose="sandbox provider test")


async def test_opens_the_tenants_driver_against_its_sandbox(sessions: async_sessionmaker[AsyncSession]) -> None:
    provider = SandboxDriverProvider(sessions)
    tenant = await create_tenant(sessions, provider="hubspot")
    try:
        async with provider.open(tenant, ACTOR) as driver:
            assert driver.slug == "hubspot"
            created = await driver.create_record(CrmObject.CUSTOMER, {"lastname": "Sandboxed"}, "k-1")
        contacts = provider.state("hubspot").records["contacts"]
        assert contacts[created.external_id].properties["lastname"] == "Sandboxed"
        assert provider.opened == 1 and provider.actors == [ACTOR]
    finally:
        await provider.aclose()


async def test_salesforce_tenant_gets_the_orgs_instance_url(sessions: async_sessionmaker[AsyncSession]) -> None:
    provider = SandboxDriverProvider(sessions)
    tenant = await create_tenant(sessions, provider="salesforce")
    try:
        async with provider.open(tenant, ACTOR) as driver:
            created = await driver.create_record(CrmObject.CUSTOMER, {"LastName": "Forced"}, "k-2")
        assert any(r["Id"] == created.external_id for r in provider.state("salesforce").live("Contact"))
    finally:
        await provider.aclose()


async def test_unknown_or_disabled_tenant_is_a_lookup_error(sessions: async_sessionmaker[AsyncSession]) -> None:
    provider = SandboxDriverProvider(sessions)
    disabled = await create_tenant(sessions, status="disabled")
    for tenant in (uuid.uuid4(), disabled):
        with pytest.raises(LookupError):
            async with provider.open(tenant, ACTOR):
                pass
