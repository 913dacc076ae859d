"""The promise under the races a fault campaign found: a row is `synced` only when the CRM holds this version
of it, each row has its own CRM object, and a transcript batch lands exactly once.

Each test reproduces one finding of the combined fault run deterministically (a CRM response held or lost at
the transport), end to end: agent API → outbox → relay → tenant mirror worker → HubSpot sandbox.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from drivers.text import batch_marker
from settings import Settings
from store.models import IdempotencyRecord
from tests.support.faults import Faults
from tests.support.lifecycle import eventually, lifecycle_rig, row_of, synced
from workflows.types import MirrorPolicy

pytestmark = [pytest.mark.integration]


async def test_an_update_accepted_while_the_create_is_in_flight_reaches_the_crm(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client, task_queue: str) -> None:
    faults = Faults()
    create = faults.hold("POST", "/crm/v3/objects/contacts/batch/upsert")  # the mirror creates by batch upsert
    async with lifecycle_rig(settings, engine, sessions, temporal_client, task_queue, wrap=faults.wrap) as rig:
        lead = (await rig.api.post("/api/agent/leads", json={"fields": {"first_name": "Rosalind",
                                                                        "last_name": "Franklin"}})).json()
        await rig.relay.drain()
        await create.reached.wait()  # the CRM created the contact; its answer is on the way back
        patched = await rig.api.patch(f"/api/agent/leads/{lead['id']}",
                                      json={"status": "contacted", "fields": {"timeline": "next week"}})
        assert patched.status_code == 202, patched.text
        await rig.relay.drain()
        create.release.set()

        row = await eventually(lambda: synced(sessions, "leads", rig.tenant, uuid.UUID(lead["id"])))
        contact = rig.hubspot.records["contacts"][row.crm_external_id]
        assert contact.properties["hs_lead_status"] == "contacted"
        assert "timeline: next week" in contact.properties["message"]
        assert len(rig.hubspot.records["contacts"]) == 1
        async with sessions() as session:  # the ledger says which version the CRM holds: the patched one
            entry = (await session.execute(select(IdempotencyRecord).where(
                IdempotencyRecord.tenant_id == rig.tenant))).scalar_one()
        assert entry.external_id == row.crm_external_id and entry.row_updated_at == row.updated_at


async def test_a_lead_and_a_case_of_the_same_turn_each_get_their_own_crm_record(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client, task_queue: str) -> None:
    async with lifecycle_rig(settings, engine, sessions, temporal_client, task_queue) as rig:
        conversation = (await rig.api.post("/api/agent/conversations", json={
            "customer": {"name": "Lise Meitner"}, "messages": []})).json()
        turn = {"conversation_id": conversation["id"], "turn_id": "t9"}
        lead = (await rig.api.post("/api/agent/leads", json={**turn, "fields": {"last_name": "Hahn"}})).json()
        case = (await rig.api.post("/api/agent/cases", json={**turn, "subject": "Broken boiler"})).json()
        await rig.relay.drain()

        lead_row = await eventually(lambda: synced(sessions, "leads", rig.tenant, uuid.UUID(lead["id"])))
        case_row = await eventually(lambda: synced(sessions, "cases", rig.tenant, uuid.UUID(case["id"])))
        assert lead_row.crm_external_id in rig.hubspot.records["contacts"]
        ticket = rig.hubspot.records["tickets"][case_row.crm_external_id]  # a ticket, not the lead's contact
        assert ticket.properties["subject"] == "Broken boiler"


async def test_a_transcript_batch_whose_flush_failed_midway_is_appended_once(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client, task_queue: str) -> None:
    faults = Faults()
    async with lifecycle_rig(settings, engine, sessions, temporal_client, task_queue, wrap=faults.wrap) as rig:
        conversation = (await rig.api.post("/api/agent/conversations", json={
            "customer": {"name": "Chien-Shiung Wu"},
            "messages": [{"turn_id": "1", "role": "customer", "text": "Is the flat still free?"}]})).json()
        conversation_id = uuid.UUID(conversation["id"])
        await rig.relay.drain()
        note_id = (await eventually(lambda: synced(sessions, "conversations", rig.tenant, conversation_id))
                   ).crm_external_id

        # The next flush carries a message batch and the summary; the summary's append lands in the CRM but its
        # answer is lost (as when the database restarted before the attempt could record it), so it is retried.
        lost = faults.lose("PATCH", "/crm/v3/objects/notes/", after=1)
        await rig.api.post(f"/api/agent/conversations/{conversation_id}/messages", json={"messages": [
            {"turn_id": "2", "role": "agent", "text": "It is, shall I book a viewing?"}]})
        await rig.api.patch(f"/api/agent/conversations/{conversation_id}", json={"summary": "Wants a viewing"})
        await rig.relay.drain()
        await lost.happened.wait()

        async def settled() -> bool:
            row = await row_of(sessions, "conversations", rig.tenant, conversation_id)
            return bool(row is not None and row.sync_state == "synced" and row.summary == "Wants a viewing"
                        and "Summary: Wants a viewing" in rig.hubspot.records["notes"][note_id]
                        .properties["hs_note_body"])

        await eventually(settled)
        body: str = rig.hubspot.records["notes"][note_id].properties["hs_note_body"]
        assert body.count("agent: It is, shall I book a viewing?") == 1
        assert body.count("Summary: Wants a viewing") == 1
        assert body.count("customer: Is the flat still free?") == 1
        assert body.count(batch_marker(f"{conversation_id}:2")) == 1


async def test_a_transcript_waiting_for_its_customer_goes_as_soon_as_the_customer_syncs(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client, task_queue: str) -> None:
    # A CRM backoff of half an hour: only the dependency wake, not a retry timer, can sync the transcript in time.
    slow = MirrorPolicy(first_backoff=timedelta(minutes=30), max_backoff=timedelta(hours=1))
    async with lifecycle_rig(settings, engine, sessions, temporal_client, task_queue, policy=slow) as rig:
        rig.hubspot.knobs.fail_next = 1  # the customer's first CRM call answers 503: it backs off for 30 minutes
        conversation = (await rig.api.post("/api/agent/conversations", json={
            "customer": {"name": "Emmy Noether", "phone": "+49 30 1234567"},
            "messages": [{"turn_id": "1", "role": "customer", "text": "Do you open on Sundays?"}]})).json()
        conversation_id, customer_id = uuid.UUID(conversation["id"]), uuid.UUID(conversation["customer_id"])
        await rig.relay.drain()

        async def waiting() -> bool:
            row = await row_of(sessions, "conversations", rig.tenant, conversation_id)
            return bool(row is not None and row.last_sync_error == "dependency_pending:customers"
                        and row.sync_state == "pending" and row.retry_at is not None)

        await eventually(waiting)  # the transcript found no customer in the CRM and waits (no CRM call spent)
        customer = await row_of(sessions, "customers", rig.tenant, customer_id)
        assert customer is not None and customer.sync_state == "retrying" and customer.sync_attempts == 1
        # The agent corrects the customer: an update is due at once, and its success frees the transcript.
        await rig.api.patch(f"/api/agent/customers/{customer_id}", json={"email": "emmy@example.org"})
        await rig.relay.drain()
        await eventually(lambda: synced(sessions, "customers", rig.tenant, customer_id))
        row = await eventually(lambda: synced(sessions, "conversations", rig.tenant, conversation_id))
        assert "customer: Do you open on Sundays?" in rig.hubspot.records["notes"][row.crm_external_id] \
            .properties["hs_note_body"]
