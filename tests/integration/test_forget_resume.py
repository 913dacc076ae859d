"""Forget survives its worker: a worker stopped mid-run is replaced and the erasure completes exactly once;
and the production composition root (worker.build_worker with its own activities) runs the workflow."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus

import worker as composition
from settings import Settings
from store.erasure import Subject
from store.models import ErasureRequest
from tests.integration.forget_support import (
    EMAIL,
    SandboxDrivers,
    count_rows,
    create_request,
    forget_worker,
    pausing_driver,
    prepare_forget,
    seed_subject,
)
from workflows.forget import ForgetWorkflow
from workflows.forget_types import forget_workflow_id

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def test_a_worker_stopped_mid_run_is_replaced_and_the_erasure_completes_once(
        temporal_client: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        task_queue: str) -> None:
    entered, release = asyncio.Event(), asyncio.Event()
    paused = pausing_driver(entered, release, pause_on_call=2)
    drivers, seeded, forget = await prepare_forget(sessions, settings, paused)
    first = forget_worker(temporal_client, settings, sessions, drivers, task_queue)
    running = asyncio.create_task(first.run())
    handle = await temporal_client.start_workflow(
        ForgetWorkflow.run, forget, id=forget_workflow_id(seeded.tenant_id, forget.subject_hash),
        task_queue=task_queue, execution_timeout=timedelta(minutes=3))
    await asyncio.wait_for(entered.wait(), timeout=60)
    phase = await handle.query(ForgetWorkflow.phase)
    stopping = asyncio.create_task(first.shutdown())
    await asyncio.sleep(0)  # the worker stops polling first; the delete in flight then finishes in its grace time
    release.set()
    await stopping
    await running
    assert phase == "deleting_crm_records"
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING  # left mid-way, no worker polling

    # A fresh worker (no cached workflow state: it replays the history) finishes the erasure.
    async with forget_worker(temporal_client, settings, sessions, drivers, task_queue):
        result = await handle.result()
    # None re-deleted (which would read not_found).
    assert result.status == "completed" and result.outcomes == {"deleted": 2, "archived": 3}
    assert await count_rows(sessions, seeded.rows) == 0
    assert not drivers.exists(*seeded.crm["contact"]) and not drivers.live(*seeded.crm["note"])
    deletes = drivers.state.calls
    assert deletes["POST /crm/v3/objects/contacts/gdpr-delete"] == 2  # the customer and the lead contact, once each
    assert deletes["DELETE /crm/v3/objects/{object_type}/{record_id}"] == 3  # two notes and the ticket, once each


async def test_the_composition_root_runs_forget_with_the_vault_provider(
        temporal_client: Client, settings: Settings, engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession], task_queue: str) -> None:
    # The tenant has no stored CRM credentials, so the vault cannot open its CRM: local rows are still
    # erased, the CRM part is reported for an operator, and the sealed identifiers are kept for a retry.
    drivers = SandboxDrivers()
    seeded = await seed_subject(sessions, drivers)
    forget = await create_request(sessions, settings, seeded.tenant_id, Subject(email=EMAIL))
    assert ForgetWorkflow in composition.WORKFLOWS
    activities = composition.build_activities(settings, engine)
    async with composition.build_worker(temporal_client, settings, activities=activities, task_queue=task_queue):
        result = await temporal_client.execute_workflow(
            ForgetWorkflow.run, forget, id=forget_workflow_id(seeded.tenant_id, forget.subject_hash),
            task_queue=task_queue, execution_timeout=timedelta(minutes=2))
    assert result.status == "needs_attention" and result.outcomes == {"failed": 4}
    assert await count_rows(sessions, seeded.rows) == 0
    async with sessions() as session:
        row = (await session.execute(select(ErasureRequest).where(ErasureRequest.id == forget.request_id))).scalar_one()
    assert row.error == "discover:tenant_unavailable" and row.sealed_identifiers is not None
    assert drivers.live(*seeded.crm["contact"]) and uuid.UUID(str(row.id)) == forget.request_id
