"""POST /v1/leads: a lead from the tenant's own system goes through the lifecycle into the CRM."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.relay import OutboxRelay
from settings import Settings
from store.models import Customer, Lead, MirrorOutbox
from tests.support.lifecycle import eventually, lifecycle_worker, relay_for, row_of
from tests.support.sandbox_provider import SandboxDriverProvider
from tests.support.tenants import create_tenant
from tests.unit.api.support import client_for, context, key_headers, make_key

pytestmark = pytest.mark.integration

LEADS = "/v1/leads"
LEAD = {"idempotency_key": "form-1", "source": "website",
        "customer": {"name": "Ada Lovelace", "phone": "+1 415 555 0199", "email": "ada@example.com"},
        "fields": {"lead.message": "Looking for a 2-bed flat"}}


@pytest_asyncio.fixture(loop_scope="session")
async def drivers(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[SandboxDriverProvider]:
    provider = SandboxDriverProvider(sessions)
    yield provider
    await provider.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def tenant(sessions: async_sessionmaker[AsyncSession]) -> uuid.UUID:
    return await create_tenant(sessions)


@pytest_asyncio.fixture(loop_scope="session")
async def relay(engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], temporal_client: Client,
                task_queue: str, tenant: uuid.UUID) -> OutboxRelay:
    return relay_for(engine, sessions, temporal_client, task_queue, tenants=[tenant])


@pytest_asyncio.fixture(loop_scope="session")
async def api(settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
              drivers: SandboxDriverProvider, relay: OutboxRelay) -> AsyncIterator[httpx.AsyncClient]:
    ctx = context(settings, engine, sessions, drivers)
    ctx.extras["relay"] = relay
    async with client_for(ctx) as client:
        yield client


async def test_a_lead_reaches_the_crm_through_the_tenant_mirror(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], drivers: SandboxDriverProvider,
        relay: OutboxRelay, temporal_client: Client, task_queue: str, tenant: uuid.UUID) -> None:
    key = await make_key(sessions, tenant, scopes=("leads:write",))
    async with lifecycle_worker(temporal_client, sessions, drivers, task_queue):
        response = await api.post(LEADS, json=LEAD, headers=key_headers(key))
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["sync_state"] == "pending" and body["workflow_id"] == f"mirror:{tenant}"  # the tenant mirror
        await relay.drain()

        async def synced() -> Lead | None:
            row = await row_of(sessions, "leads", tenant, uuid.UUID(body["lead_id"]))
            return row if row is not None and row.sync_state == "synced" else None

        lead = await eventually(synced)
        contacts = drivers.state("hubspot").records["contacts"]
        assert contacts[lead.crm_external_id].properties["lifecyclestage"] == "lead"
        assert any(c.properties.get("email") == "ada@example.com" for c in contacts.values())


async def test_replay_422_and_scopes_without_the_crm(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], tenant: uuid.UUID) -> None:
    key = await make_key(sessions, tenant, scopes=("leads:write",))
    first = await api.post(LEADS, json=LEAD, headers=key_headers(key))
    again = await api.post(LEADS, json=LEAD, headers=key_headers(key))
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    changed = await api.post(LEADS, json=LEAD | {"source": "kiosk"}, headers=key_headers(key))
    assert changed.status_code == 422 and changed.json()["type"].endswith("/idempotency-key-reused")
    async with sessions() as session:
        leads = await session.scalar(select(func.count()).select_from(Lead).where(Lead.tenant_id == tenant))
        customers = await session.scalar(select(func.count()).select_from(Customer)
                                         .where(Customer.tenant_id == tenant))
        intents = await session.scalar(select(func.count()).select_from(MirrorOutbox)
                                       .where(MirrorOutbox.tenant_id == tenant))
    assert (leads, customers, intents) == (1, 1, 2)  # the row and its mirror intent, once

    crm_only = await make_key(sessions, tenant, scopes=("crm:write",))
    refused = await api.post(LEADS, json=LEAD | {"idempotency_key": "form-2"}, headers=key_headers(crm_only))
    assert refused.status_code == 403 and refused.json()["required_scope"] == "leads:write"


async def test_bad_leads_are_4xx(api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession],
                                 tenant: uuid.UUID) -> None:
    headers = key_headers(await make_key(sessions, tenant, scopes=("leads:write",)))
    for bad in ({"source": "web"},  # no idempotency_key
                LEAD | {"customer": {"phone": "not a phone"}},
                LEAD | {"fields": {"Budget Max": 1}},
                LEAD | {"customer": {}}):
        response = await api.post(LEADS, json=bad, headers=headers)
        assert response.status_code == 422, (bad, response.text)
        assert response.headers["content-type"] == "application/problem+json"
