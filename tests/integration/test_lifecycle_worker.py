"""The production composition root runs the lifecycle: `worker.build_activities` with the vault's
DriverProvider (credentials decrypted and audited as the lifecycle), a tenant wired to a loopback HubSpot
sandbox; and the sweep's Schedule registers idempotently."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client, ScheduleActionStartWorkflow

import worker
from api.app import create_app
from api.auth import mint_token
from api.context import AppContext
from api.lifecycle import SWEEP_SCHEDULE_ID, ensure_sweep_schedule
from api.relay import OutboxRelay
from api.temporal import TemporalGateway
from sandboxes import hubspot as hubspot_sandbox
from sandboxes.serve import serve_in_task
from settings import Settings
from store.models import AuditLog
from tests.support.lifecycle import agent_api, eventually, lifecycle_worker, relay_for, synced
from tests.support.sandbox_provider import SandboxDriverProvider
from tests.support.tenants import create_tenant
from vault.connections import Actor
from vault.credentials import CredentialVault
from workflows.sweep import SweepWorkflow
from workflows.tenant_mirror import TenantMirrorWorkflow

pytestmark = [pytest.mark.integration]


async def test_composition_root_mirrors_through_the_vault(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client, task_queue: str) -> None:
    assert TenantMirrorWorkflow in worker.WORKFLOWS and SweepWorkflow in worker.WORKFLOWS
    app = hubspot_sandbox.create_app()
    hubspot: hubspot_sandbox.HubSpotState = app.state.sandbox
    async with serve_in_task(app) as base_url:
        tenant = await create_tenant(sessions, settings={"base_url": base_url,
                                                         "token_url": f"{base_url}/oauth/v3/token"})
        vault = CredentialVault.from_settings(settings, sessions)
        await vault.store(tenant, "hubspot", {"auth": "oauth2", **asdict(hubspot.tokens.credentials())},
                          actor=Actor(type="system", id="test", purpose="connect"))
        relay = relay_for(engine, sessions, temporal_client, task_queue, tenants=[tenant])
        activities = worker.build_activities(settings, engine)
        async with worker.build_worker(temporal_client, settings, activities=activities, task_queue=task_queue), \
                agent_api(settings, engine, sessions, tenant, relay=relay) as api:
            customer = (await api.post("/api/agent/customers", json={"name": "Dorothy Hodgkin"})).json()
            await relay.drain()
            row = await eventually(lambda: synced(sessions, "customers", tenant, uuid.UUID(customer["id"])))
    assert hubspot.records["contacts"][row.crm_external_id].properties["lastname"] == "Hodgkin"
    async with sessions() as session:
        audits = (await session.execute(select(AuditLog).where(AuditLog.tenant_id == tenant,
                                                               AuditLog.action == "credential.decrypt"))).scalars()
        actors = {(a.actor_type, a.actor_id) for a in audits}
    assert ("system", customer["workflow_id"]) in actors  # the decrypt is audited as the tenant's mirror


async def test_sweep_schedule_registers_idempotently(temporal_client: Client, task_queue: str) -> None:
    try:
        assert await ensure_sweep_schedule(temporal_client, task_queue) == "created"
        assert await ensure_sweep_schedule(temporal_client, task_queue, every=timedelta(minutes=5)) == "updated"
        description = await temporal_client.get_schedule_handle(SWEEP_SCHEDULE_ID).describe()
        action = description.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == "SweepWorkflow" and action.task_queue == task_queue
        assert [i.every for i in description.schedule.spec.intervals] == [timedelta(minutes=5)]
    finally:
        await temporal_client.get_schedule_handle(SWEEP_SCHEDULE_ID).delete()



async def test_api_process_relays_on_its_own(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client, task_queue: str) -> None:
    """The app's lifespan runs the relay; an ingest nudges it (no explicit drain anywhere)."""
    drivers = SandboxDriverProvider(sessions)
    tenant = await create_tenant(sessions)
    settings = settings.model_copy(update={"temporal": settings.temporal.model_copy(update={"task_queue": task_queue})})
    context = AppContext(settings=settings, engine=engine, sessions=sessions,
                         temporal=TemporalGateway(settings.temporal, client=temporal_client))
    app = create_app(context=context)
    token = mint_token(settings, subject="agent", role="agent", tenant_id=tenant)
    async with lifecycle_worker(temporal_client, sessions, drivers, task_queue), app.router.lifespan_context(app), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test",
                              headers={"Authorization": f"Bearer {token}"}) as api:
        customer = (await api.post("/api/agent/customers", json={"name": "Lise Meitner"})).json()
        await eventually(lambda: synced(sessions, "customers", tenant, uuid.UUID(customer["id"])))
    assert isinstance(context.extras["relay"], OutboxRelay) and context.extras["relay"].delivered >= 1
    await drivers.aclose()
