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
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from api.auth import mint_token
from api.keys import revoke_api_key
from sandboxes import hubspot as hubspot_sandbox
from settings import Settings
from store.models import AuditLog, Incident, MirrorOutbox
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
    # A smuggled tenant is refused outright (unknown members are a 422 everywhere), before any CRM call.
    refused = await tenancy.api.post("/api/tools/crm_lookup_customer", headers=headers, json={
        "email": "bea@example.com", "tenant_id": str(tenancy.b), "tenant": str(tenancy.b)})
    assert refused.status_code == 422
    smuggled = {"conversation_id": "conv-a"}

    lookup = await tenancy.api.post("/api/tools/crm_lookup_customer", headers=headers,
                                    json={"email": "bea@example.com"} | smuggled)
    assert lookup.json() == {"ok": True, "found": False, "customer": None, "reason": None}
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
    smuggled = await tenancy.api.post("/v1/crm/create-record", headers=key_headers(key_a), json={
        "object": "customer", "fields": {"last_name": "ViaKey"}, "idempotency_key": "same",
        "tenant_id": str(tenancy.b)})
    assert smuggled.status_code == 422  # refused, not ignored
    response = await tenancy.api.post("/v1/crm/create-record", headers=key_headers(key_a), json={
        "object": "customer", "fields": {"last_name": "ViaKey"}, "idempotency_key": "same"})
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


def operator(settings: Settings, tenant: uuid.UUID) -> dict[str, str]:
    return {"authorization": f"Bearer {mint_token(settings, subject='op-a', role='operator', tenant_id=tenant)}"}


async def test_an_operator_of_one_tenant_never_reaches_another_tenants_credential(
        tenancy: Tenancy, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    mine = await tenancy.api.get(f"/api/operator/tenants/{tenancy.a}/connection", headers=operator(settings, tenancy.a))
    assert mine.status_code == 200 and mine.json()["credential"]["scheme"] == "env"
    assert "access_token" not in mine.text
    theirs = await tenancy.api.get(f"/api/operator/tenants/{tenancy.b}/connection",
                                   headers=operator(settings, tenancy.a))
    assert theirs.status_code == 404
    before = await CredentialVault.from_settings(settings, sessions).load(tenancy.b, SETUP)
    overwrite = await tenancy.api.post(f"/api/operator/tenants/{tenancy.b}/connect/credentials",
                                       headers=operator(settings, tenancy.a),
                                       json={"auth": "bearer", "access_token": "attacker-token"})
    assert overwrite.status_code == 404
    after = await CredentialVault.from_settings(settings, sessions).load(tenancy.b, SETUP)
    assert after.secret == before.secret and after.version == before.version
    agent = await tenancy.api.get(f"/api/operator/tenants/{tenancy.a}/connection",
                                  headers=agent_headers(settings, tenancy.a))
    assert agent.status_code == 403  # an agent token never reads credentials, even its own tenant's


async def test_an_operator_of_one_tenant_never_reaches_another_tenants_incidents(
        tenancy: Tenancy, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        incident = Incident(tenant_id=tenancy.b, kind="crm_sync_failure", table_name="leads", row_id=uuid.uuid4(),
                            last_error="UnavailableError status=503", attempts=9)
        session.add(incident)
    theirs = await tenancy.api.get(f"/api/tenants/{tenancy.b}/incidents", headers=operator(settings, tenancy.a))
    assert theirs.status_code == 404
    redrive = await tenancy.api.post(f"/api/tenants/{tenancy.b}/incidents/{incident.id}/redrive",
                                     headers=operator(settings, tenancy.a))
    assert redrive.status_code == 404
    # Asking for B's incident under A's own tenant path finds nothing either.
    sideways = await tenancy.api.post(f"/api/tenants/{tenancy.a}/incidents/{incident.id}/redrive",
                                      headers=operator(settings, tenancy.a))
    assert sideways.status_code == 404
    mine = await tenancy.api.get(f"/api/tenants/{tenancy.a}/incidents", headers=operator(settings, tenancy.a))
    assert mine.status_code == 200 and mine.json()["incidents"] == []
    async with sessions() as session:
        queued = await session.scalar(select(func.count()).select_from(MirrorOutbox)
                                      .where(MirrorOutbox.tenant_id == tenancy.b, MirrorOutbox.op == "redrive"))
    assert queued == 0
