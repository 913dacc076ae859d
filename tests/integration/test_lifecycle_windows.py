"""Retention windows on the time-skipping server: every class-(c) row reaches the CRM, stays exactly its
window after the CRM write (messages 7 days; conversations, customers, leads, qualification 30; cases 90),
then is purged locally by the sweep (the only purge: no per-row timers) — while the CRM keeps the records."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from settings import Settings
from store import content
from store.models import Message, QualificationState
from tests.support.histories import keep_history
from tests.support.lifecycle import eventually, is_closed, lifecycle_rig, row_of
from workflows.sweep import SweepWorkflow
from workflows.types import SweepInput

pytestmark = [pytest.mark.integration]
MINUTE = timedelta(minutes=1)


async def _synced(sessions: async_sessionmaker[AsyncSession], tenant: uuid.UUID, rows: dict[str, list[uuid.UUID]]
                  ) -> dict[uuid.UUID, datetime] | None:
    """purge_after per row once every row is synced, else None."""
    found: dict[uuid.UUID, datetime] = {}
    for table, ids in rows.items():
        for row_id in ids:
            row = await row_of(sessions, table, tenant, row_id)
            if row is None or row.sync_state != "synced":
                return None
            assert row.purge_after - row.synced_at == content.retention(table)
            found[row_id] = row.purge_after
    return found


async def _present(sessions: async_sessionmaker[AsyncSession], tenant: uuid.UUID,
                   rows: dict[str, list[uuid.UUID]]) -> dict[str, int]:
    return {table: sum([await row_of(sessions, table, tenant, i) is not None for i in ids])
            for table, ids in rows.items()}


async def test_each_table_is_purged_exactly_at_its_window(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        time_skipping_env: WorkflowEnvironment, task_queue: str) -> None:
    env, rig_queue = time_skipping_env, task_queue
    async with lifecycle_rig(settings, engine, sessions, env.client, task_queue) as rig:
        api, relay, tenant, hubspot = rig.api, rig.relay, rig.tenant, rig.hubspot
        conversation = (await api.post("/api/agent/conversations", json={
            "customer": {"name": "Ada Lovelace", "phone": "+44 20 7946 0321"},
            "messages": [{"turn_id": "1", "role": "customer", "text": "Is the flat on Elm Street available?"},
                         {"turn_id": "2", "role": "agent", "text": "It is; shall I book a viewing?"}]})).json()
        customer_id = conversation["customer_id"]
        lead = (await api.post("/api/agent/leads", json={
            "customer_id": customer_id, "conversation_id": conversation["id"], "turn_id": "2",
            "fields": {"budget_max": 450000}, "qualification": {"stage": "qualified", "score": 80}})).json()
        case = (await api.post("/api/agent/cases", json={
            "customer_id": customer_id, "subject": "Boiler noise", "description": "Banging at night"})).json()
        status = (await api.get(f"/api/agent/records/conversations/{conversation['id']}")).json()
        assert status["sync_state"] == "pending"  # answered before any CRM write
        await relay.drain()

        async with sessions() as session:
            message_ids = list((await session.execute(select(Message.id).where(
                Message.conversation_id == uuid.UUID(conversation["id"])))).scalars())
            qualification_id = (await session.execute(select(QualificationState.id).where(
                QualificationState.lead_id == uuid.UUID(lead["id"])))).scalar_one()
        rows = {"messages": message_ids, "conversations": [uuid.UUID(conversation["id"])],
                "customers": [uuid.UUID(customer_id)], "leads": [uuid.UUID(lead["id"])],
                "qualification_states": [qualification_id], "cases": [uuid.UUID(case["id"])]}
        purge_after = await eventually(lambda: _synced(sessions, tenant, rows), within=60)
        assert await eventually(lambda: is_closed(env.client, rig.mirror_id))  # no open execution for synced rows
        await keep_history(env.client, rig.mirror_id, "tenant_mirror_synced")

        contact = hubspot.records["contacts"][(await row_of(sessions, "customers", tenant, rows["customers"][0]))
                                              .crm_external_id]
        assert contact.properties["lifecyclestage"] == "lead" and "Qualification: qualified, score 80" in \
            contact.properties["message"]
        assert len(hubspot.records["tickets"]) == 1 and len(hubspot.records["notes"]) == 1

        async def sweep_at(moment: datetime, name: str | None = None) -> None:
            """What the sweep's Schedule does at that moment (the test server runs no Schedules)."""
            await env.sleep(moment - await env.get_current_time())
            sweep_id = f"sweep-{uuid.uuid4()}"
            with env.auto_time_skipping_disabled():  # else the wait for its result skips years ahead
                await env.client.execute_workflow(SweepWorkflow.run, SweepInput(), id=sweep_id, task_queue=rig_queue)
            if name:
                await keep_history(env.client, sweep_id, name)

        expected = {table: len(ids) for table, ids in rows.items()}
        windows = sorted({content.retention(table) for table in rows})  # 7, 30 and 90 days
        for window in windows:
            group = [t for t in rows if content.retention(t) == window]
            deadlines = [purge_after[i] for t in group for i in rows[t]]
            await sweep_at(min(deadlines) - MINUTE)
            assert await _present(sessions, tenant, rows) == expected, f"purged before the {window} window"
            await sweep_at(max(deadlines) + MINUTE, "sweep" if window == windows[0] else None)
            expected = {t: (0 if t in group else n) for t, n in expected.items()}
            assert await _present(sessions, tenant, rows) == expected
        # The CRM is the system of record: everything is still there.
        assert len(hubspot.records["contacts"]) == 1 and len(hubspot.records["tickets"]) == 1
        note = next(iter(hubspot.records["notes"].values()))
        assert "Is the flat on Elm Street available?" in note.properties["hs_note_body"]


