"""The hot path's per-process copies (store/cache.py): the opened credential, the tenant row, the field mapping.

What must hold: every opening is audited as its own actor (a reused copy too, and before any request leaves);
every real decrypt is audited; a write through this process is seen at once; one made elsewhere within the TTL.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import telemetry
from drivers.hubspot import HubSpotDriver
from settings import Settings
from store.cache import TtlCache
from store.field_mapping import cached_mapping, put_override
from store.models import AuditLog, Tenant
from tests.unit.vault.support import ACTOR, SYSTEM, connect_to_sandbox, make_tenant, make_vault, sandbox
from vault.connections import Actor
from vault.provider import TenantDisabledError, VaultDriverProvider


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def decrypts_ok() -> float:
    return telemetry.DECRYPTS.labels("hubspot", "ok")._value.get()


async def decrypt_rows(sessions: async_sessionmaker[AsyncSession], tenant: uuid.UUID) -> list[AuditLog]:
    async with sessions() as session:
        return list(await session.scalars(select(AuditLog).where(
            AuditLog.tenant_id == tenant, AuditLog.action == "credential.decrypt").order_by(AuditLog.id)))


def actor(request_id: str) -> Actor:
    return Actor(type="tool", id="agent-7", purpose="crm_lookup_customer", request_id=request_id)


async def test_a_burst_of_openings_decrypts_once_and_audits_each_as_its_actor(
        settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    vault = make_vault(settings, sessions)
    tenant = await make_tenant(sessions)
    await vault.store(tenant, "hubspot", {"access_token": "at-1"}, actor=SYSTEM)
    before = decrypts_ok()
    first, pending = await vault.opened(tenant, actor("req-1"), "hubspot")
    assert pending is None  # a real decrypt: audited before opened() returned
    second, audit = await vault.opened(tenant, actor("req-2"), "hubspot")
    assert audit is not None and await audit is True
    assert first.secret == second.secret == {"access_token": "at-1"}
    assert decrypts_ok() - before == 1  # one real decrypt for two openings
    rows = await decrypt_rows(sessions, tenant)
    assert [(r.request_id, r.details.get("cached")) for r in rows] == [("req-1", None), ("req-2", True)]
    assert all("at-1" not in str(r.details) for r in rows)


async def test_store_rotate_and_revoke_through_the_vault_are_seen_at_once(
        settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    vault = make_vault(settings, sessions)
    tenant = await make_tenant(sessions)
    await vault.store(tenant, "hubspot", {"access_token": "at-1"}, actor=SYSTEM)
    assert (await vault.opened(tenant, ACTOR, "hubspot"))[0].secret["access_token"] == "at-1"
    await vault.store(tenant, "hubspot", {"access_token": "at-2"}, actor=SYSTEM)  # a reconnect
    assert (await vault.opened(tenant, ACTOR, "hubspot"))[0].secret["access_token"] == "at-2"
    async with vault.locked(tenant, "hubspot", SYSTEM) as locked:  # a token refresh
        await locked.replace({"access_token": "at-3"}, expires_at=None)
    current, _ = await vault.opened(tenant, ACTOR, "hubspot")
    assert current.secret["access_token"] == "at-3" and not current.needs_reconnect
    assert await vault.mark_needs_reconnect(current, SYSTEM)  # a refused grant
    assert (await vault.opened(tenant, ACTOR, "hubspot"))[0].needs_reconnect


async def test_another_process_reconnecting_is_seen_within_the_ttl(
        settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    clock = Clock()
    here, elsewhere = make_vault(settings, sessions), make_vault(settings, sessions)
    here.cache = TtlCache(5.0, clock=clock)
    tenant = await make_tenant(sessions)
    await elsewhere.store(tenant, "hubspot", {"access_token": "at-1"}, actor=SYSTEM)
    assert (await here.opened(tenant, ACTOR, "hubspot"))[0].secret["access_token"] == "at-1"
    await elsewhere.store(tenant, "hubspot", {"access_token": "at-2"}, actor=SYSTEM)
    clock.now += 5.0
    assert (await here.opened(tenant, ACTOR, "hubspot"))[0].secret["access_token"] == "at-2"


async def test_a_reused_credentials_audit_row_is_written_before_the_request_leaves(
        settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    _, state, inner = sandbox("hubspot")
    audited_when_sent: list[int] = []

    class Observed(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            async with sessions() as session:
                audited_when_sent.append(await session.scalar(select(func.count()).select_from(AuditLog).where(
                    AuditLog.request_id == "req-b", AuditLog.action == "credential.decrypt")) or 0)
            return await inner.handle_async_request(request)

    provider = VaultDriverProvider(sessions, make_vault(settings, sessions), transport=Observed())
    tenant = await connect_to_sandbox(provider.vault, sessions, state)
    async with provider.open(tenant, actor(f"req-a-{uuid.uuid4().hex}")) as driver:
        assert (await driver.test_connection()).ok
    async with provider.open(tenant, actor("req-b")) as driver:  # the credential comes from the copy
        assert (await driver.test_connection()).ok
    assert audited_when_sent[-1] == 1
    rows = [r for r in await decrypt_rows(sessions, tenant) if r.request_id == "req-b"]
    assert [r.details.get("cached") for r in rows] == [True]


async def test_the_tenant_row_is_reread_after_forget_tenant_or_the_ttl(
        settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    _, state, transport = sandbox("hubspot")
    clock = Clock()
    provider = VaultDriverProvider(sessions, make_vault(settings, sessions), transport=transport)
    provider.tenants = TtlCache(5.0, clock=clock)
    tenant = await connect_to_sandbox(provider.vault, sessions, state)
    assert (await provider.tenant(tenant)).status == "active"

    async def set_status(status: str) -> None:
        async with sessions.begin() as session:
            await session.execute(update(Tenant).where(Tenant.id == tenant).values(status=status))

    await set_status("disabled")  # by another process (the CLI): seen once the copy is older than the TTL
    clock.now += 5.0
    with pytest.raises(TenantDisabledError):
        async with provider.open(tenant, ACTOR):
            pass
    await set_status("active")  # by this process: it says so
    provider.forget_tenant(tenant)
    async with provider.open(tenant, ACTOR) as driver:
        assert (await driver.test_connection()).ok


async def test_a_committed_mapping_change_is_seen_at_once_and_a_rolled_back_one_never(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = await make_tenant(sessions)
    before = await cached_mapping(sessions, tenant, HubSpotDriver)
    assert before.write.get("lead.budget_max") != "budget_aed"
    assert await cached_mapping(sessions, tenant, HubSpotDriver) is before  # the copy
    async with sessions() as session:
        await session.begin()
        await put_override(session, tenant, "write", "lead.budget_max", "budget_aed")
        await session.rollback()
    assert await cached_mapping(sessions, tenant, HubSpotDriver) is before
    async with sessions.begin() as session:
        await put_override(session, tenant, "write", "lead.budget_max", "budget_aed")
    assert (await cached_mapping(sessions, tenant, HubSpotDriver)).write["lead.budget_max"] == "budget_aed"
