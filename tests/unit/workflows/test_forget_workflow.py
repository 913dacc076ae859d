"""ForgetWorkflow on the real dev server with the real erasure activities, database and HubSpot sandbox."""

from __future__ import annotations

import base64
import json
import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import workflow
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, Worker

from drivers.hubspot import HubSpotDriver
from settings import Settings
from store import erasure_requests as requests
from store.erasure import Subject
from store.models import AuditLog, Customer, ErasureOutcome, ErasureRequest, Message
from tests.integration.forget_support import (
    EMAIL,
    NAME,
    PHONE,
    NoDeleteHubSpotDriver,
    count_rows,
    forget_worker,
    prepare_forget,
)
from workflows.forget import ForgetWorkflow
from workflows.forget_types import ForgetInput, ForgetResult, forget_workflow_id

pytestmark = pytest.mark.asyncio(loop_scope="session")
HISTORY = Path(__file__).parents[2] / "histories" / "forget_completed.json"


@workflow.defn(sandboxed=False)  # test-only stand-in for a record lifecycle that is still waiting
class ParkedLifecycle:
    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)


def readable_history(history_json: str) -> str:
    """The history JSON plus every payload decoded: payload data is base64 in the JSON form."""
    decoded: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "data" in node and "metadata" in node and isinstance(node["data"], str):
                decoded.append(base64.b64decode(node["data"]).decode("utf-8", "replace"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(history_json))
    return history_json + "\n" + "\n".join(decoded)


async def run_forget(client: Client, input: ForgetInput, task_queue: str) -> ForgetResult:
    return await client.execute_workflow(ForgetWorkflow.run, input,
                                         id=forget_workflow_id(input.tenant_id, input.subject_hash),
                                         task_queue=task_queue, execution_timeout=timedelta(minutes=2))


async def outcomes(sessions: async_sessionmaker[AsyncSession], request_id: uuid.UUID) -> list[ErasureOutcome]:
    async with sessions() as session:
        result = await session.execute(select(ErasureOutcome).where(ErasureOutcome.request_id == request_id))
        return list(result.scalars())


async def request_row(sessions: async_sessionmaker[AsyncSession], request_id: uuid.UUID) -> ErasureRequest:
    async with sessions() as session:
        row = await session.get(ErasureRequest, request_id)
    assert row is not None
    return row


async def test_forget_deletes_crm_records_scrubs_every_table_and_records_outcomes(
        temporal_client: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        task_queue: str) -> None:
    drivers, seeded, forget = await prepare_forget(sessions, settings)
    async with forget_worker(temporal_client, settings, sessions, drivers, task_queue):
        result = await run_forget(temporal_client, forget, task_queue)

    assert result.status == "completed" and result.outcomes == {"deleted": 2, "archived": 3}
    assert await count_rows(sessions, seeded.rows) == 0
    assert result.local_rows_scrubbed == sum(len(ids) for ids in seeded.rows.values()) == 8
    # The CRM: contacts are GDPR-deleted (gone), notes and tickets archived, the other customer untouched.
    for role in ("contact", "lead"):
        assert not drivers.exists(*seeded.crm[role])
    for role in ("note", "booking", "ticket"):
        assert drivers.exists(*seeded.crm[role]) and not drivers.live(*seeded.crm[role])
    assert drivers.live("contacts", seeded.other_crm_id)
    recorded = await outcomes(sessions, forget.request_id)
    assert sorted((o.object, o.external_id, o.source) for o in recorded) == sorted([
        ("customer", seeded.crm["contact"][1], "local"), ("lead", seeded.crm["lead"][1], "search"),
        ("note", seeded.crm["note"][1], "local"), ("appointment", seeded.crm["booking"][1], "local"),
        ("case", seeded.crm["ticket"][1], "local")])
    assert all(not o.needs_operator and o.attempts == 1 for o in recorded)
    # Contacts (customer and lead) are GDPR-deleted; HubSpot can only archive notes and tickets. The
    # appointment (the row's object) lives in a HubSpot note, which is what was archived: the outcome says so,
    # with the day HubSpot purges it (archived records stay restorable for 90 days).
    assert {o.object: o.outcome for o in recorded} == {"customer": "deleted", "lead": "deleted", "note": "archived",
                                                       "appointment": "archived", "case": "archived"}
    assert {o.object: o.hard_deleted for o in recorded} == {"customer": True, "lead": True, "note": False,
                                                             "appointment": False, "case": False}
    for o in recorded:
        if o.outcome == "archived":
            assert o.provider_purge_after is not None
            assert 89 <= (o.provider_purge_after - o.updated_at).total_seconds() / 86400 <= 90
        else:
            assert o.provider_purge_after is None
    async with sessions() as session:
        kept = (await session.execute(select(Customer.id).where(Customer.tenant_id == seeded.tenant_id))).scalars()
        assert list(kept) == [seeded.other_customer_id]
        assert len(list((await session.execute(select(Message.id).where(
            Message.tenant_id == seeded.tenant_id))).scalars())) == 1
    row = await request_row(sessions, forget.request_id)
    assert row.status == "completed" and row.completed_at is not None and row.sealed_identifiers is None


async def test_identifiers_never_reach_temporal_history_or_audit_rows(
        temporal_client: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        task_queue: str) -> None:
    drivers, seeded, forget = await prepare_forget(sessions, settings, subject=lambda seeded: Subject(
        phone=PHONE, email=EMAIL, external_id=seeded.crm["contact"][1], customer_id=seeded.customer_id))
    async with forget_worker(temporal_client, settings, sessions, drivers, task_queue):
        await run_forget(temporal_client, forget, task_queue)
    handle = temporal_client.get_workflow_handle(forget_workflow_id(seeded.tenant_id, forget.subject_hash))
    fetched = await handle.fetch_history()
    if os.environ.get("CRM_RECORD_FORGET_HISTORY"):  # refresh the stored history the replay test reads
        HISTORY.write_text(fetched.to_json())
    history = readable_history(fetched.to_json())
    async with sessions() as session:
        audit = list((await session.execute(select(AuditLog).where(
            AuditLog.request_id == str(forget.request_id)))).scalars())
    audit_text = json.dumps([[a.action, a.actor_id, a.purpose, a.details, a.subject_hash] for a in audit])
    assert {a.action for a in audit} >= {"erasure.hold", "erasure.crm_delete", "erasure.local_scrub",
                                          "erasure.finished"}
    assert all(a.subject_hash == forget.subject_hash for a in audit)
    forbidden = [PHONE, PHONE.lstrip("+"), "4155550123", EMAIL, EMAIL.split("@")[0], NAME, "Dana"]
    # The CRM id and our customer id were identifiers of this request: the audit must not name them either.
    for text, extra in ((history, []), (audit_text, [seeded.crm["contact"][1], str(seeded.customer_id)])):
        for value in [*forbidden, *extra]:
            assert value not in text, f"{value!r} leaked"
    assert str(forget.request_id) in history  # the scan looked at the right history


async def test_delete_unsupported_becomes_divergent_with_operator_flag_and_audit(
        temporal_client: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        task_queue: str) -> None:
    drivers, seeded, forget = await prepare_forget(sessions, settings, NoDeleteHubSpotDriver)
    async with forget_worker(temporal_client, settings, sessions, drivers, task_queue):
        result = await run_forget(temporal_client, forget, task_queue)

    assert result.status == "needs_attention" and result.outcomes == {"deleted": 2, "archived": 2, "divergent": 1}
    case = next(o for o in await outcomes(sessions, forget.request_id) if o.object == "case")
    assert case.outcome == "divergent" and case.needs_operator and case.external_id == seeded.crm["ticket"][1]
    assert drivers.live(*seeded.crm["ticket"])  # still at the provider: the operator must delete it by hand
    async with sessions() as session:
        flagged = list((await session.execute(select(AuditLog).where(
            AuditLog.request_id == str(forget.request_id), AuditLog.action == "erasure.crm_divergent"))).scalars())
    assert len(flagged) == 1 and flagged[0].details["outcome_id"] == str(case.id)
    assert flagged[0].details["needs_operator"] is True and flagged[0].subject_hash == forget.subject_hash
    assert await count_rows(sessions, seeded.rows) == 0  # local rows are ours to erase regardless
    assert (await request_row(sessions, forget.request_id)).sealed_identifiers is None  # nothing left to retry


async def test_rerun_after_lost_outcomes_reports_not_found_instead_of_failing(
        temporal_client: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        task_queue: str) -> None:
    drivers, seeded, forget = await prepare_forget(sessions, settings)
    async with forget_worker(temporal_client, settings, sessions, drivers, task_queue):
        await run_forget(temporal_client, forget, task_queue)
        # As if the worker died after each CRM delete but before recording it: every target is pending again.
        async with sessions() as session, session.begin():
            await session.execute(update(ErasureOutcome).where(ErasureOutcome.request_id == forget.request_id)
                                  .values(outcome="pending", hard_deleted=None))
            await session.execute(update(ErasureRequest).where(ErasureRequest.id == forget.request_id)
                                  .values(status="running"))
        again = await run_forget(temporal_client, forget, task_queue)
    assert again.status == "completed" and again.outcomes == {"not_found": 5}


async def test_failed_crm_steps_are_recorded_and_a_retry_run_finishes_them(
        temporal_client: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        task_queue: str) -> None:
    drivers, seeded, forget = await prepare_forget(sessions, settings)
    drivers.state.knobs.fail_next = 10_000  # the CRM answers 503 to everything
    async with forget_worker(temporal_client, settings, sessions, drivers, task_queue):
        first = await run_forget(temporal_client, forget, task_queue)
        row = await request_row(sessions, forget.request_id)
        assert first.status == "needs_attention" and first.outcomes == {"failed": 4}
        assert row.error == "discover:unavailable" and row.sealed_identifiers is not None  # kept for the retry
        assert all(o.error == "unavailable" and o.attempts == 1 for o in await outcomes(sessions, forget.request_id))
        assert await count_rows(sessions, seeded.rows) == 0  # the local scrub does not wait for the CRM
        assert drivers.live(*seeded.crm["contact"])

        drivers.state.knobs.fail_next = 0
        async with sessions() as session, session.begin():
            assert await requests.reopen(session, forget.request_id, seeded.tenant_id) is not None
        second = await run_forget(temporal_client, forget, task_queue)
    assert second.status == "completed" and second.outcomes == {"deleted": 2, "archived": 3}  # CRM-only lead too
    assert not drivers.exists(*seeded.crm["contact"])
    row = await request_row(sessions, forget.request_id)
    assert row.error is None and row.sealed_identifiers is None


async def test_the_tenant_mirror_is_not_cancelled_by_an_erasure(
        temporal_client: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        task_queue: str) -> None:
    """The hold stops mirroring the subject's rows (the guard in every pass); the tenant's mirror serves everyone
    else, so the erasure leaves it running."""
    drivers, seeded, forget = await prepare_forget(sessions, settings, HubSpotDriver)
    parked_queue = f"{task_queue}-parked"
    mirror = f"mirror:{seeded.tenant_id}"
    async with Worker(temporal_client, task_queue=parked_queue, workflows=[ParkedLifecycle]), \
            forget_worker(temporal_client, settings, sessions, drivers, task_queue):
        await temporal_client.start_workflow(ParkedLifecycle.run, id=mirror, task_queue=parked_queue)
        result = await run_forget(temporal_client, forget, task_queue)
        handle = temporal_client.get_workflow_handle(mirror)
        status = (await handle.describe()).status
        await handle.terminate()
    assert result.status == "completed" and result.lifecycles_cancelled == 0
    assert status == WorkflowExecutionStatus.RUNNING


async def test_the_stored_history_of_a_completed_erasure_still_replays() -> None:
    # Recorded from test_identifiers_never_reach_temporal_history_or_audit_rows; a change to the workflow that
    # would break running erasures fails here (gate it with workflow.patched, then re-record).
    history = WorkflowHistory.from_json("forget-replay", HISTORY.read_text())
    replayer = Replayer(workflows=[ForgetWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history)
    assert result.replay_failure is None
