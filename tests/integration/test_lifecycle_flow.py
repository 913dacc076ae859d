"""Ingest → outbox → relay → the tenant mirror → HubSpot sandbox, on the real Temporal dev server."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecution

from api.temporal import TemporalGateway
from settings import Settings, TemporalSettings
from store.models import MirrorOutbox
from tests.support.lifecycle import (
    agent_api,
    eventually,
    is_closed,
    lifecycle_rig,
    lifecycle_worker,
    relay_for,
    row_of,
    synced,
)
from tests.support.sandbox_provider import SandboxDriverProvider
from tests.support.tenants import create_tenant

pytestmark = [pytest.mark.integration]


async def test_customer_conversation_and_messages_reach_the_crm(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client, task_queue: str) -> None:
    async with lifecycle_rig(settings, engine, sessions, temporal_client, task_queue) as rig:
        api, relay, tenant, hubspot = rig.api, rig.relay, rig.tenant, rig.hubspot
        response = await api.post("/api/agent/conversations", json={
            "customer": {"name": "Grace Hopper", "phone": "+1 415 555 0134", "email": "grace@example.com"},
            "channel": "voice",
            "messages": [{"turn_id": "t1", "role": "customer", "text": "I want to book a viewing"},
                         {"turn_id": "t2", "role": "agent", "text": "Sure, which day suits you?"}]})
        assert response.status_code == 201, response.text
        conversation_id, customer_id = uuid.UUID(response.json()["id"]), uuid.UUID(response.json()["customer_id"])
        await relay.drain()

        customer = await eventually(lambda: synced(sessions, "customers", tenant, customer_id))
        contact = hubspot.records["contacts"][customer.crm_external_id]
        assert contact.properties["lastname"] == "Hopper" and contact.properties["email"] == "grace@example.com"

        conversation = await eventually(lambda: synced(sessions, "conversations", tenant, conversation_id))
        note = hubspot.records["notes"][conversation.crm_external_id]
        body = note.properties["hs_note_body"]
        assert "customer: I want to book a viewing" in body and "agent: Sure, which day suits you?" in body
        assert note.associations == [("contacts", customer.crm_external_id, 202)]

        more = await api.post(f"/api/agent/conversations/{conversation_id}/messages", json={"messages": [
            {"turn_id": "t3", "role": "customer", "text": "Thursday afternoon"},
            {"turn_id": "t2", "role": "agent", "text": "Sure, which day suits you?"}]})
        assert more.status_code == 202 and more.json()["accepted"] == 1 and more.json()["duplicates"] == 1
        await relay.drain()
        await eventually(lambda: "customer: Thursday afternoon" in hubspot.records["notes"][
            conversation.crm_external_id].properties["hs_note_body"])
        await eventually(lambda: synced(sessions, "conversations", tenant, conversation_id))
        assert len(hubspot.records["notes"]) == 1  # one transcript note per conversation, not one per message
        # Nothing left unsynced: the tenant's mirror completes (no open execution for an idle tenant).
        assert await eventually(lambda: is_closed(temporal_client, rig.mirror_id))
        status = (await api.get(f"/api/agent/records/customers/{customer_id}")).json()
        assert status["sync_state"] == "synced" and status["sync_attempts"] == 1



async def test_ingest_accepts_while_temporal_is_down_and_the_relay_catches_up(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client, task_queue: str) -> None:
    drivers = SandboxDriverProvider(sessions)
    tenant = await create_tenant(sessions)
    nowhere = TemporalGateway(TemporalSettings(address="127.0.0.1:1"))
    stranded = relay_for(engine, sessions, nowhere, task_queue, tenants=[tenant])
    async with agent_api(settings, engine, sessions, tenant, relay=stranded, temporal=nowhere) as api:
        customer = await api.post("/api/agent/customers", json={"name": "Emmy Noether", "phone": "+49 30 1234567"})
        case = await api.post("/api/agent/cases", json={"customer_id": customer.json()["id"], "subject": "Invoice"})
        assert customer.status_code == 201 and case.status_code == 201
        with pytest.raises(Exception):  # noqa: B017 - whatever the connection error, nothing was claimed
            await stranded.run_once()
    async with sessions() as session:
        waiting = (await session.execute(select(MirrorOutbox.op).where(
            MirrorOutbox.tenant_id == tenant, MirrorOutbox.relayed_at.is_(None)))).scalars().all()
    assert sorted(waiting) == ["create", "create"]

    relay = relay_for(engine, sessions, temporal_client, task_queue, tenants=[tenant])  # Temporal is back
    async with lifecycle_worker(temporal_client, sessions, drivers, task_queue):
        assert await relay.drain() == 2
        for table, row_id in (("customers", customer.json()["id"]), ("cases", case.json()["id"])):
            await eventually(lambda t=table, r=row_id: synced(sessions, t, tenant, uuid.UUID(r)))
    assert len(drivers.state("hubspot").records["tickets"]) == 1
    await drivers.aclose()


async def test_no_customer_content_in_any_workflow_history(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client, task_queue: str) -> None:
    marker = uuid.uuid4().hex[:8]
    secrets = {"name": f"Zebulon Quixote{marker}", "email": f"zq{marker}@example.org", "phone": "+1 212 555 0187",
               "e164": "+12125550187", "said": f"my gate code is {marker}", "summary": f"wants a loft {marker}",
               "budget": f"budget{marker}", "subject": f"Leaking roof {marker}", "notes": f"bring ladder {marker}"}
    async with lifecycle_rig(settings, engine, sessions, temporal_client, task_queue) as rig:
        api, relay, tenant = rig.api, rig.relay, rig.tenant
        conversation = (await api.post("/api/agent/conversations", json={
            "customer": {"name": secrets["name"], "email": secrets["email"], "phone": secrets["phone"]},
            "messages": [{"turn_id": "a", "role": "customer", "text": secrets["said"]}]})).json()
        customer_id = conversation["customer_id"]
        await api.patch(f"/api/agent/conversations/{conversation['id']}", json={"summary": secrets["summary"]})
        lead = (await api.post("/api/agent/leads", json={
            "customer_id": customer_id, "fields": {"budget_note": secrets["budget"]},
            "qualification": {"stage": "warm", "answers": {"timeline": secrets["budget"]}}})).json()
        await api.post("/api/agent/appointments", json={
            "customer_id": customer_id, "starts_at": "2026-12-01T15:00:00Z", "notes": secrets["notes"]})
        await api.post("/api/agent/cases", json={"customer_id": customer_id, "subject": secrets["subject"]})
        # A write that fails for good (an unmapped field) puts a failure into history too.
        blocked = (await api.post("/api/agent/customers", json={
            "name": secrets["name"], "fields": {"shoe_size": secrets["budget"]}})).json()
        await relay.drain()
        await eventually(lambda: synced(sessions, "leads", tenant, uuid.UUID(lead["id"])))
        await eventually(lambda: synced(sessions, "conversations", tenant, uuid.UUID(conversation["id"])))
        await eventually(lambda: _state_is(sessions, tenant, uuid.UUID(blocked["id"]), "blocked"))
        mirror = temporal_client.get_workflow_handle(rig.mirror_id)
        assert await eventually(lambda: _query_is(mirror, "blocked"))  # only the blocked row is left

        runs = await eventually(lambda: _runs(temporal_client, tenant, at_least=1))
        needles = [value.encode() for value in secrets.values()]
        for run in runs:
            handle = temporal_client.get_workflow_handle(run.id, run_id=run.run_id)
            history = await handle.fetch_history()
            raw = b"".join(event.SerializeToString() for event in history.events)
            raw += (await handle.describe()).raw_description.SerializeToString()
            assert str(tenant).encode() in raw  # the scan does see payloads and search attributes (ids are there)
            assert not [n for n in needles if n in raw], f"customer content in the history of {run.id}"
        assert {run.id for run in runs} == {rig.mirror_id}  # one workflow for the tenant, not one per row


async def _runs(client: Client, tenant: uuid.UUID, *, at_least: int) -> list[WorkflowExecution] | None:
    runs = [run async for run in client.list_workflows(f'CrmTenant = "{tenant}"')]
    return runs if len(runs) >= at_least else None


async def _query_is(handle, state: str) -> bool:  # type: ignore[no-untyped-def]
    return bool(await handle.query("sync_state") == state)


async def _state_is(sessions: async_sessionmaker[AsyncSession], tenant: uuid.UUID, row_id: uuid.UUID,
                    state: str) -> bool:
    row = await row_of(sessions, "customers", tenant, row_id)
    return row is not None and row.sync_state == state
