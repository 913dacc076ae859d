"""Cross-tenant attempts through the real vault: two tenants, two CRMs, two encrypted credentials.

Whatever a caller of tenant A puts in the body, it only ever decrypts A's credential and only ever reaches
A's CRM; B's records, credential and keys stay out of reach.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from api.keys import revoke_api_key
from sandboxes import hubspot as hubspot_sandbox
from settings import Settings
from store.models import AuditLog
from tests.support.tenants import create_tenant
from tests.unit.api.support import agent_headers, client_for, context, key_headers, make_key
from vault.connections import Actor
from vault.credentials import CredentialVault
from vault.provider import VaultDriverProvider

pytestmark = pytest.mark.integration

SETUP = Actor(type="platform_operator", id="op-1", purpose="connect")


class ByHost(httpx.AsyncBaseTransport):
    """Routes each request to the sandbox CRM its host names (one per tenant)."""

    def __init__(self, apps: dict[str, Starlette]) -> None:
        self.transports = {host: httpx.ASGITransport(app=app) for host, app in apps.items()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.transports[request.url.host].handle_async_request(request)


@dataclass
class Tenancy:
    api: httpx.AsyncClient
    a: uuid.UUID
    b: uuid.UUID
    crm_a: hubspot_sandbox.HubSpotState
    crm_b: hubspot_sandbox.HubSpotState


@pytest_asyncio.fixture(loop_scope="session")
async def tenancy(settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
                  ) -> AsyncIterator[Tenancy]:
    apps = {f"{name}.crm.test": hubspot_sandbox.create_app() for name in ("a", "b")}
    vault = CredentialVault.from_settings(settings, sessions)
    tenants = []
    for host, app in apps.items():
        tenant = await create_tenant(sessions, settings={"base_url": f"https://{host}", "portal_id": 7})
        token = app.state.sandbox.tokens.issue_access()
        await vault.store(tenant, "hubspot", {"auth": "bearer", "access_token": token}, actor=SETUP)
        tenants.append(tenant)
    provider = VaultDriverProvider(sessions, vault, transport=ByHost(apps))
    async with client_for(context(settings, engine, sessions, provider)) as api:
        yield Tenancy(api, tenants[0], tenants[1], *(app.state.sandbox for app in apps.values()))


async def decrypts(sessions: async_sessionmaker[AsyncSession], tenant: uuid.UUID) -> list[AuditLog]:
    async with sessions() as session:
        rows = await session.scalars(select(AuditLog).where(AuditLog.tenant_id == tenant,
                                                            AuditLog.action == "credential.decrypt"))
        return list(rows)


async def test_an_agent_reaches_only_its_own_crm_and_credential(
        tenancy: Tenancy, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    victim = tenancy.crm_b.add("contacts", {"firstname": "Bea", "lastname": "Other", "email": "bea@example.com"})
    headers = agent_headers(settings, tenancy.a) | {"X-Request-ID": "req-tenancy"}
    smuggled = {"tenant_id": str(tenancy.b), "tenant": str(tenancy.b), "conversation_id": "conv-a"}

    lookup = await tenancy.api.post("/api/tools/crm_lookup_customer", headers=headers,
                                    json={"email": "bea@example.com"} | smuggled)
    assert lookup.json() == {"ok": True, "found": False, "customer": None}
    update = await tenancy.api.post("/api/tools/crm_update_record", headers=headers, json={
        "object": "customer", "external_id": victim.id, "fields": {"lastname": "Hijacked"}} | smuggled)
    assert update.json()["ok"] is False and update.json()["reason"] == "not_found"
    create = await tenancy.api.post("/api/tools/crm_create_record", headers=headers, json={
        "object": "customer", "fields": {"last_name": "Mine"}} | smuggled)
    assert create.json()["ok"] is True

    assert victim.properties["lastname"] == "Other" and len(tenancy.crm_b.records["contacts"]) == 1
    assert [r.properties["lastname"] for r in tenancy.crm_a.records["contacts"].values()] == ["Mine"]
    audited = await decrypts(sessions, tenancy.a)
    assert len(audited) == 3
    assert {(r.actor_type, r.actor_id, r.request_id, r.conversation_id) for r in audited} == {
        ("tool", "agent-7", "req-tenancy", "conv-a")}
    assert {r.purpose for r in audited} == {"crm_lookup_customer", "crm_update_record", "crm_create_record"}
    assert await decrypts(sessions, tenancy.b) == []


async def test_an_api_key_writes_only_into_its_own_tenant(
        tenancy: Tenancy, sessions: async_sessionmaker[AsyncSession]) -> None:
    key_a, key_b = await make_key(sessions, tenancy.a), await make_key(sessions, tenancy.b)
    response = await tenancy.api.post("/v1/crm/create-record", headers=key_headers(key_a), json={
        "object": "customer", "fields": {"last_name": "ViaKey"}, "idempotency_key": "same",
        "tenant_id": str(tenancy.b)})
    assert response.status_code == 201
    assert "contacts" not in tenancy.crm_b.records
    # B using the same idempotency key gets its own record, not A's answer replayed.
    response_b = await tenancy.api.post("/v1/crm/create-record", headers=key_headers(key_b), json={
        "object": "customer", "fields": {"last_name": "ViaKey"}, "idempotency_key": "same"})
    assert response_b.status_code == 201 and "Idempotent-Replayed" not in response_b.headers
    assert len(tenancy.crm_b.records["contacts"]) == 1
    assert await decrypts(sessions, tenancy.b) != []
    # Neither tenant can revoke the other's key.
    with pytest.raises(LookupError):
        await revoke_api_key(sessions, tenancy.a, key_b.prefix)
    assert (await tenancy.api.post("/v1/crm/create-record", headers=key_headers(key_b), json={
        "object": "customer", "fields": {"last_name": "Still"}, "idempotency_key": "k2"})).status_code == 201
