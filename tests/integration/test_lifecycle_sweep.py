"""The sweep: purges overdue synced rows, never an unsynced one, escalates rows stuck for 24 h once, and
re-queues rows whose lifecycle may be missing (which the relay then starts)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.lifecycle import workflow_id
from store.models import Conversation, Customer, Incident, Message, MirrorOutbox
from tests.support.histories import keep_history
from tests.support.lifecycle import is_running, lifecycle_worker, relay_for, row_of
from tests.support.sandbox_provider import SandboxDriverProvider
from tests.support.tenants import create_tenant
from workflows.sweep import SweepWorkflow
from workflows.types import SweepInput

pytestmark = [pytest.mark.integration]


async def test_sweep_purges_escalates_and_requeues(
        engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], temporal_client: Client,
        task_queue: str) -> None:
    now = datetime.now(UTC)
    hour, two_days = timedelta(hours=1), timedelta(days=2)
    tenant = await create_tenant(sessions)
    synced = {"sync_state": "synced", "crm_external_id": "c1", "synced_at": now - 31 * 24 * hour,
              "purge_after": now - hour, "sync_attempts": 1}
    due = Customer(id=uuid.uuid4(), tenant_id=tenant, name="due", **synced)
    changed = Customer(id=uuid.uuid4(), tenant_id=tenant, name="changed again",
                       **(synced | {"sync_state": "pending"}))
    stuck = Customer(id=uuid.uuid4(), tenant_id=tenant, name="stuck", sync_state="failed", sync_attempts=40,
                     last_sync_error="unavailable:503", created_at=now - two_days, updated_at=now - two_days)
    conversation = Conversation(id=uuid.uuid4(), tenant_id=tenant, customer_id=due.id, **synced)
    orphan = Message(id=uuid.uuid4(), tenant_id=tenant, conversation_id=conversation.id, turn_id="1", role="agent",
                     text="hi", sync_state="pending", sync_attempts=0, created_at=now - two_days,
                     updated_at=now - two_days)
    async with sessions() as session, session.begin():
        session.add_all([due, changed, stuck, conversation, orphan])

    async with lifecycle_worker(temporal_client, sessions, SandboxDriverProvider(sessions), task_queue):
        sweep_id = f"sweep-{uuid.uuid4()}"
        first = await temporal_client.execute_workflow(SweepWorkflow.run, SweepInput(), id=sweep_id,
                                                       task_queue=task_queue)
        await keep_history(temporal_client, sweep_id, "sweep")
        second = await temporal_client.execute_workflow(SweepWorkflow.run, SweepInput(),
                                                        id=f"sweep-{uuid.uuid4()}", task_queue=task_queue)
    assert first.purged >= 1 and first.escalated >= 1 and first.enqueued >= 2

    assert await row_of(sessions, "customers", tenant, due.id) is None
    assert await row_of(sessions, "customers", tenant, changed.id) is not None  # past its window, but unsynced
    assert await row_of(sessions, "customers", tenant, stuck.id) is not None
    assert await row_of(sessions, "conversations", tenant, conversation.id) is not None  # a message still waits
    async with sessions() as session:
        incidents = (await session.execute(select(Incident).where(Incident.tenant_id == tenant))).scalars().all()
        queued = (await session.execute(select(MirrorOutbox.table_name, MirrorOutbox.row_id, MirrorOutbox.op)
                                        .where(MirrorOutbox.tenant_id == tenant))).all()
    assert [(i.table_name, i.row_id, i.attempts, i.last_error) for i in incidents] == \
        [("customers", stuck.id, 40, "unavailable:503")]  # once, although the sweep ran twice
    assert sorted(queued) == sorted([("customers", stuck.id, "ensure"), ("messages", orphan.id, "append")])
    assert second.escalated == 0

    # No worker on this queue: only the starts are looked at.
    relay = relay_for(engine, sessions, temporal_client, f"{task_queue}-idle", tenants=[tenant])
    await relay.drain()
    assert await is_running(temporal_client, workflow_id(tenant, "customers", stuck.id))
    transcript = temporal_client.get_workflow_handle(workflow_id(tenant, "conversations", conversation.id))
    assert await is_running(temporal_client, transcript.id)
    for handle in (transcript, temporal_client.get_workflow_handle(workflow_id(tenant, "customers", stuck.id))):
        await handle.terminate()
