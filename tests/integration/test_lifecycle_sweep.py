"""The sweep: purges overdue synced rows, never an unsynced one, keeps one incident per (tenant, failure kind)
with its row count, and wakes the mirror of a tenant whose rows fell through (which the relay then starts)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.lifecycle import mirror_workflow_id
from store.models import Conversation, Customer, Incident, Message, MirrorOutbox
from tests.support.histories import keep_history
from tests.support.lifecycle import is_running, lifecycle_worker, relay_for, row_of
from tests.support.sandbox_provider import SandboxDriverProvider
from tests.support.tenants import create_tenant
from workflows.sweep import SweepWorkflow
from workflows.types import SweepInput

pytestmark = [pytest.mark.integration]


async def test_sweep_purges_escalates_and_wakes_fallen_through_tenants(
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
    stuck = [Customer(id=uuid.uuid4(), tenant_id=tenant, name=f"stuck{i}", sync_state="retrying", sync_attempts=40,
                      last_sync_error="unavailable:503", created_at=now - two_days, updated_at=now - two_days,
                      retry_at=now - two_days) for i in range(3)]
    conversation = Conversation(id=uuid.uuid4(), tenant_id=tenant, customer_id=due.id, **synced)
    orphan = Message(id=uuid.uuid4(), tenant_id=tenant, conversation_id=conversation.id, turn_id="1", role="agent",
                     text="hi", sync_state="pending", sync_attempts=0, created_at=now - two_days,
                     updated_at=now - two_days)
    async with sessions() as session, session.begin():
        session.add_all([due, changed, *stuck, conversation, orphan])

    async with lifecycle_worker(temporal_client, sessions, SandboxDriverProvider(sessions), task_queue):
        sweep_id = f"sweep-{uuid.uuid4()}"
        first = await temporal_client.execute_workflow(SweepWorkflow.run, SweepInput(), id=sweep_id,
                                                       task_queue=task_queue)
        await keep_history(temporal_client, sweep_id, "sweep")
        second = await temporal_client.execute_workflow(SweepWorkflow.run, SweepInput(),
                                                        id=f"sweep-{uuid.uuid4()}", task_queue=task_queue)
    assert first.purged >= 1 and first.escalated >= 1 and first.enqueued >= 1

    assert await row_of(sessions, "customers", tenant, due.id) is None
    assert await row_of(sessions, "customers", tenant, changed.id) is not None  # past its window, but unsynced
    assert all([await row_of(sessions, "customers", tenant, s.id) is not None for s in stuck])
    assert await row_of(sessions, "conversations", tenant, conversation.id) is not None  # a message still waits
    async with sessions() as session:
        incidents = (await session.execute(select(Incident).where(Incident.tenant_id == tenant))).scalars().all()
        queued = (await session.execute(select(MirrorOutbox.op).where(MirrorOutbox.tenant_id == tenant))).all()
    # One incident for the tenant's three stuck rows, although the sweep ran twice.
    assert [(i.failure_kind, i.row_count, i.attempts, i.last_error, i.status) for i in incidents] == \
        [("unavailable", 3, 40, "unavailable:503", "open")]
    assert [op for op, in queued] == ["ensure"]  # one wake for the tenant, not one per row
    assert second.escalated == 0 and second.enqueued == 0  # its wake is still waiting for the relay

    # No worker on this queue: only the start is looked at.
    relay = relay_for(engine, sessions, temporal_client, f"{task_queue}-idle", tenants=[tenant])
    await relay.drain()
    assert await is_running(temporal_client, mirror_workflow_id(tenant))
    await temporal_client.get_workflow_handle(mirror_workflow_id(tenant)).terminate()
