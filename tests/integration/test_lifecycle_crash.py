"""Exactly-once effect: a worker killed between the CRM create and the ledger write leaves one CRM record."""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from sandboxes import hubspot as hubspot_sandbox
from sandboxes.serve import serve_in_task
from settings import Settings
from store.models import IdempotencyRecord
from tests.support.lifecycle import agent_api, eventually, lifecycle_worker, relay_for, synced
from tests.support.sandbox_provider import SandboxDriverProvider
from tests.support.tenants import create_tenant
from workflows.types import MirrorPolicy

pytestmark = [pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]
# A killed worker is noticed when its pass stops heartbeating (10 s), and the pass is retried on the survivor.
POLICY = MirrorPolicy(first_backoff=timedelta(milliseconds=200))


async def _ledger(sessions: async_sessionmaker[AsyncSession], tenant: uuid.UUID, key: str) -> IdempotencyRecord:
    async with sessions() as session:
        return (await session.execute(select(IdempotencyRecord).where(
            IdempotencyRecord.tenant_id == tenant, IdempotencyRecord.key == key))).scalar_one()


async def test_worker_killed_between_crm_create_and_ledger_write(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        temporal_env: WorkflowEnvironment, task_queue: str) -> None:
    client = temporal_env.client
    app = hubspot_sandbox.create_app()
    hubspot: hubspot_sandbox.HubSpotState = app.state.sandbox
    tenant = await create_tenant(sessions)
    relay = relay_for(engine, sessions, client, task_queue, tenants=[tenant], policy=POLICY)
    async with serve_in_task(app) as base_url, agent_api(settings, engine, sessions, tenant, relay=relay) as api:
        doomed = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.support.worker_process",
            "--temporal", client.service_client.config.target_host,
            "--task-queue", task_queue, "--database-url", settings.database_url, "--sandbox", f"hubspot={base_url}",
            "--kill-after", "POST /crm/v3/objects/contacts/batch/upsert", cwd=ROOT, stdout=asyncio.subprocess.PIPE)
        assert doomed.stdout is not None
        assert await asyncio.wait_for(doomed.stdout.readline(), 60) == b"worker ready\n"
        customer = (await api.post("/api/agent/customers", json={"name": "Barbara McClintock"})).json()
        row_id, key = uuid.UUID(customer["id"]), f"customers:{customer['id']}"
        await relay.drain()

        assert await asyncio.wait_for(doomed.wait(), 60) == -signal.SIGKILL
        created = [r for r in hubspot.records["contacts"].values()
                   if r.properties.get("crm_sor_idempotency_key") == key]
        assert len(created) == 1  # the CRM made the record…
        assert (await _ledger(sessions, tenant, key)).status == "pending"  # …and we never heard back

        survivor = SandboxDriverProvider(sessions, urls={"hubspot": base_url})
        async with lifecycle_worker(client, sessions, survivor, task_queue):
            row = await eventually(lambda: synced(sessions, "customers", tenant, row_id), within=60)
        await survivor.aclose()

        keyed = [r for r in hubspot.records["contacts"].values()
                 if r.properties.get("crm_sor_idempotency_key") == key]
        assert [r.id for r in keyed] == [created[0].id] and len(hubspot.records["contacts"]) == 1
        ledger = await _ledger(sessions, tenant, key)
        assert ledger.status == "done" and ledger.external_id == created[0].id == row.crm_external_id

