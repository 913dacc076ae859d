"""The relay: several relays drain one outbox (disjoint batches on PostgreSQL; at-least-once on SQLite), and
every row gets exactly one lifecycle run, its update and redrive arriving as signals."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from store import outbox
from store.models import Customer, MirrorOutbox
from tests.support.lifecycle import eventually, relay_for
from tests.support.tenants import create_tenant

pytestmark = [pytest.mark.integration]
ROWS = 60


async def _runs(client: Client, tenant: uuid.UUID) -> Counter[str] | None:
    runs = Counter([run.id async for run in client.list_workflows(f'CrmTenant = "{tenant}"')])
    return runs if sum(runs.values()) >= ROWS else None


async def test_concurrent_relays_start_each_lifecycle_once(
        engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], is_postgres: bool,
        temporal_client: Client, task_queue: str) -> None:
    tenant = await create_tenant(sessions)
    rows = [Customer(id=uuid.uuid4(), tenant_id=tenant, name=f"c{i}", sync_attempts=0) for i in range(ROWS)]
    async with sessions() as session, session.begin():
        session.add_all(rows)
        await session.flush()
        intents = [outbox.intent_values(tenant, "customers", r.id, "create") for r in rows]
        # Two rows also got an update and a redrive before the relay ran.
        intents += [outbox.intent_values(tenant, "customers", r.id, op)
                    for r in rows[:2] for op in ("update", "redrive")]
        await outbox.add(session, intents)
    relays = [relay_for(engine, sessions, temporal_client, task_queue, tenants=[tenant]) for _ in range(3)]
    for relay in relays:
        relay._batch_size = 7  # many small batches, so the relays really interleave

    totals = await asyncio.gather(*(relay.drain() for relay in relays))

    assert sum(totals) >= len(intents)
    if is_postgres:  # SKIP LOCKED: claims are disjoint, nothing is delivered twice
        assert sum(totals) == len(intents)
    async with sessions() as session:
        left = await session.scalar(select(func.count()).select_from(MirrorOutbox).where(
            MirrorOutbox.tenant_id == tenant, MirrorOutbox.relayed_at.is_(None)))
    assert left == 0
    runs = await eventually(lambda: _runs(temporal_client, tenant))
    assert len(runs) == ROWS and set(runs.values()) == {1}  # one run per row, however often it was delivered
    for row in rows[:2]:
        history = await temporal_client.get_workflow_handle(f"mirror:{tenant}:customers:{row.id}").fetch_history()
        signals = [e.workflow_execution_signaled_event_attributes.signal_name for e in history.events
                   if e.HasField("workflow_execution_signaled_event_attributes")]
        assert set(signals) == {"changed", "redrive"}
        if is_postgres:
            assert sorted(signals) == ["changed", "redrive"]  # each delivered exactly once
    for workflow_id in runs:
        await temporal_client.get_workflow_handle(workflow_id).terminate()
