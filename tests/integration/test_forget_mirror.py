"""Mirroring while a forget runs: the tenant mirror's real pass meets the erasure guard and writes nothing for the
subject, and what arrived meanwhile is scrubbed with the rest."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.mirror import MirrorActivities
from activities.types import MirrorPassInput
from settings import Settings
from store.models import Case, Message
from tests.integration.forget_support import (
    count_rows,
    forget_worker,
    pausing_driver,
    prepare_forget,
)
from workflows.forget import ForgetWorkflow
from workflows.forget_types import forget_workflow_id

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
LATE_TEXT = "Also, my new address is 12 Late Street"


async def test_records_mirrored_while_the_forget_runs_do_not_reach_the_crm(
        temporal_client: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        task_queue: str) -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    paused = pausing_driver(entered, release, pause_on_call=1)
    drivers, seeded, forget = await prepare_forget(sessions, settings, paused)
    tenant, conversation = seeded.tenant_id, seeded.rows["conversations"][0]
    tickets_before = len(drivers.state.records.get("tickets", {}))
    note_type, note_id = seeded.crm["note"]
    env = ActivityEnvironment()
    async with forget_worker(temporal_client, settings, sessions, drivers, task_queue):
        handle = await temporal_client.start_workflow(
            ForgetWorkflow.run, forget, id=forget_workflow_id(tenant, forget.subject_hash), task_queue=task_queue,
            execution_timeout=timedelta(minutes=2))
        await asyncio.wait_for(entered.wait(), timeout=60)
        # The agent is still talking to the subject: a new message and a new case arrive mid-erasure.
        async with sessions() as session, session.begin():
            message = Message(tenant_id=tenant, conversation_id=conversation, turn_id="late", role="customer",
                              text=LATE_TEXT)
            case = Case(tenant_id=tenant, customer_id=seeded.customer_id, subject="Late complaint")
            session.add_all([message, case])
        mirrored = await env.run(MirrorActivities(sessions, drivers).mirror_pass, MirrorPassInput(tenant_id=tenant))
        release.set()
        result = await handle.result()

    assert mirrored.failed == 0  # held rows are deferred: not written (below), not failed
    assert len(drivers.state.records.get("tickets", {})) == tickets_before  # no ticket re-created
    note = drivers.state.records[note_type][note_id]
    assert LATE_TEXT not in (note.properties.get("hs_note_body") or "")  # nothing appended to the transcript
    assert result.status == "completed" and result.outcomes == {"deleted": 2, "archived": 3}
    late_rows = {"messages": [message.id], "cases": [case.id]}
    assert await count_rows(sessions, late_rows) == 0 and await count_rows(sessions, seeded.rows) == 0

    # After the erasure, a mirror pass for the tenant finds nothing of the subject to write.
    after = await env.run(MirrorActivities(sessions, drivers).mirror_pass, MirrorPassInput(tenant_id=tenant))
    assert after.failed == 0
    assert not drivers.exists(*seeded.crm["contact"])
