"""The connect flow unparks the tenant's mirror: a mirror waiting on auth_error (its next slow look a quarter of
an hour away) passes again as soon as the operator's connection test passes (a `reconnected` intent, relayed)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from activities.types import MirrorPassInput, MirrorPassResult
from api.lifecycle import mirror_workflow_id
from api.temporal import TemporalGateway
from settings import Settings
from tests.integration.test_oauth_family_e2e import deployment
from tests.support.lifecycle import eventually, relay_for
from tests.unit.vault.support import make_tenant
from workflows.tenant_mirror import TenantMirrorWorkflow
from workflows.types import MirrorInput

pytestmark = [pytest.mark.integration]


async def test_a_passing_connection_test_unparks_the_mirror(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client, task_queue: str) -> None:
    passes: list[MirrorPassInput] = []

    @activity.defn(name="mirror_pass")
    async def mirror_pass(input: MirrorPassInput) -> MirrorPassResult:  # parked first, then all written
        passes.append(input)
        if len(passes) == 1:
            return MirrorPassResult(backlog=1, state="blocked", park="auth_error")
        return MirrorPassResult(synced=1)

    gateway = TemporalGateway(settings.temporal, client=temporal_client)
    async with deployment("athenahealth", settings, engine, sessions, temporal=gateway) as d, \
            Worker(temporal_client, task_queue=task_queue, workflows=[TenantMirrorWorkflow], activities=[mirror_pass]):
        tenant = await make_tenant(sessions, "athenahealth", status="pending")
        tokens = d.state.tokens
        form = {"client_id": tokens.client_id, "client_secret": tokens.client_secret,
                "practice_id": d.state.practice_id, "environment": "preview"}
        connected = await d.api.post(f"/api/operator/tenants/{tenant}/connect/credentials",
                                     headers=d.headers("operator", tenant), json=form)
        assert connected.json()["status"] == "active", connected.text
        handle = await temporal_client.start_workflow(
            TenantMirrorWorkflow.run, MirrorInput(tenant_id=tenant, provider="athenahealth"),
            id=mirror_workflow_id(tenant), task_queue=task_queue)
        assert await eventually(lambda: _query(handle, "blocked"))
        retest = await d.api.post(f"/api/operator/tenants/{tenant}/connect/test",
                                  headers=d.headers("operator", tenant))
        assert retest.json()["status"] == "active", retest.text
        await relay_for(engine, sessions, temporal_client, task_queue, tenants=[tenant]).drain()  # the API's relay
        # The signal, not the 15-minute look, gets it going.
        result = await asyncio.wait_for(handle.result(), timeout=60)
    assert result.passes == 2 and len(passes) == 2


async def _query(handle, state: str) -> bool:  # type: ignore[no-untyped-def]
    return bool(await handle.query("sync_state") == state)
