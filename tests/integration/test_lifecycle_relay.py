"""The relay: several relays drain one outbox (disjoint batches on PostgreSQL; at-least-once on SQLite), and a
tenant gets one mirror run however many rows and intents it has — each delivery a signal-with-start."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.lifecycle import mirror_workflow_id
from store import outbox
from store.models import Customer, MirrorOutbox
from tests.support.lifecycle import relay_for
from tests.support.tenants import create_tenant

pytestmark = [pytest.mark.integration]
ROWS = 60


async def test_concurrent_relays_start_one_mirror_per_tenant(
        engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], is_postgres: bool,
        temporal_client: Client, task_queue: str) -> None:
    tenants = [await create_tenant(sessions) for _ in range(2)]
    rows = [Customer(id=uuid.uuid4(), tenant_id=tenants[i % 2], name=f"c{i}", sync_attempts=0) for i in range(ROWS)]
    async with sessions() as session, session.begin():
        session.add_all(rows)
        await session.flush()
        intents = [outbox.intent_values(r.tenant_id, "customers", r.id, "create") for r in rows]
        intents += [outbox.intent_values(r.tenant_id, "customers", r.id, "update") for r in rows[:2]]
        await outbox.add(session, intents)
    # No worker on this queue: the runs stay open, so what the relays started can be counted.
    relays = [relay_for(engine, sessions, temporal_client, task_queue, tenants=tenants) for _ in range(3)]
    for relay in relays:
        relay._batch_size = 7  # many small batches, so the relays really interleave

    totals = await asyncio.gather(*(relay.drain() for relay in relays))

    assert sum(totals) >= len(intents)
    if is_postgres:  # SKIP LOCKED: claims are disjoint, nothing is delivered twice
        assert sum(totals) == len(intents)
    async with sessions() as session:
        left = await session.scalar(select(func.count()).select_from(MirrorOutbox).where(
            MirrorOutbox.tenant_id.in_(tenants), MirrorOutbox.relayed_at.is_(None)))
    assert left == 0
    for tenant in tenants:
        runs = [run async for run in temporal_client.list_workflows(f'CrmTenant = "{tenant}"')]
        assert [run.id for run in runs] == [mirror_workflow_id(tenant)]  # one run for the tenant's 30 rows
        history = await temporal_client.get_workflow_handle(mirror_workflow_id(tenant)).fetch_history()
        starts = [e for e in history.events if e.HasField("workflow_execution_started_event_attributes")]
        signals = [e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes")]
        # One signal-with-start per delivery (a relay batch holding the tenant's intents), never a run per row.
        assert len(starts) == 1 and 1 <= len(signals) <= ROWS // 2 + 1
        await temporal_client.get_workflow_handle(mirror_workflow_id(tenant)).terminate()
