"""Ingest → outbox → relay → lifecycle workflows → HubSpot sandbox, on the real Temporal dev server."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from settings import Settings
from tests.support.lifecycle import agent_api, eventually, lifecycle_worker, relay_for, row_of
from tests.support.sandbox_provider import SandboxDriverProvider
from tests.support.tenants import create_tenant

pytestmark = [pytest.mark.integration]


async def test_customer_conversation_and_messages_reach_the_crm(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client, task_queue: str) -> None:
    drivers = SandboxDriverProvider(sessions)
    hubspot = drivers.state("hubspot")
    tenant = await create_tenant(sessions)
    relay = relay_for(engine, sessions, temporal_client, task_queue)
    async with lifecycle_worker(temporal_client, sessions, drivers, task_queue), \
            agent_api(settings, engine, sessions, tenant, relay=relay) as api:
        response = await api.post("/api/agent/conversations", json={
            "customer": {"name": "Grace Hopper", "phone": "+1 415 555 0134", "email": "grace@example.com"},
            "channel": "voice",
            "messages": [{"turn_id": "t1", "role": "customer", "text": "I want to book a viewing"},
                         {"turn_id": "t2", "role": "agent", "text": "Sure, which day suits you?"}]})
        assert response.status_code == 201, response.text
        conversation_id, customer_id = uuid.UUID(response.json()["id"]), uuid.UUID(response.json()["customer_id"])
        await relay.drain()

        customer = await eventually(lambda: _synced(sessions, "customers", tenant, customer_id))
        contact = hubspot.records["contacts"][customer.crm_external_id]
        assert contact.properties["lastname"] == "Hopper" and contact.properties["email"] == "grace@example.com"

        conversation = await eventually(lambda: _synced(sessions, "conversations", tenant, conversation_id))
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
        await eventually(lambda: _synced(sessions, "conversations", tenant, conversation_id))
        assert len(hubspot.records["notes"]) == 1  # one transcript note per conversation, not one per message
    await drivers.aclose()


async def _synced(sessions: async_sessionmaker[AsyncSession], table: str, tenant: uuid.UUID, row_id: uuid.UUID):  # type: ignore[no-untyped-def]
    row = await row_of(sessions, table, tenant, row_id)
    return row if row is not None and row.sync_state == "synced" else None
