"""Polling for CRMs without webhooks, generic over any driver, tested with the HubSpot sandbox's list_recent on
the real dev server: the first tick sets the cursor, a contact created afterwards becomes the same normalized
event a webhook would produce, its call is placed once, and ticks that see it again add nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker

from activities.crm_poll import CrmPollActivities
from api.polling import ensure_poll_schedule, remove_poll_schedule
from settings import Settings
from store.outbound_models import CallRequest, InboundCrmEvent
from tests.support.histories import keep_history
from tests.support.lifecycle import eventually
from tests.support.webhooks import WebhookRig, webhook_rig
from workflows.crm_poll import CrmPollWorkflow
from workflows.outbound_types import CrmPollInput, CrmPollResult

pytestmark = [pytest.mark.integration]
# One of these callees is between 10:00 and 19:00 local time at any moment of the day.
PHONES = {"+12125550100": "America/New_York", "+13105550100": "America/Los_Angeles",
          "+442079460000": "Europe/London", "+81312345678": "Asia/Tokyo", "+61212345678": "Australia/Sydney",
          "+18085550100": "Pacific/Honolulu"}


def daytime_phone() -> str:
    now = datetime.now(UTC)
    return next(phone for phone, zone in PHONES.items() if 10 <= now.astimezone(ZoneInfo(zone)).hour < 19)


async def _tick(client: Client, rig: WebhookRig) -> CrmPollResult:
    """One schedule tick, run directly (the poll workflow on its own queue; call workflows on the rig's)."""
    workflow_id = f"poll-test-{uuid.uuid4()}"
    result = await client.execute_workflow(
        CrmPollWorkflow.run, CrmPollInput(tenant_id=rig.tenant_id, objects=["customer"],
                                          task_queue=rig.settings.temporal.task_queue),
        id=workflow_id, task_queue=f"{rig.settings.temporal.task_queue}-poll")
    await keep_history(client, workflow_id, "crm_poll")
    return result


async def test_polled_changes_become_events_and_one_call(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client) -> None:
    phone = daytime_phone()
    async with webhook_rig(settings, engine, sessions, temporal_client) as rig:
        await rig.configure(phone=phone)
        worker = rig.worker(temporal_client)
        poller = Worker(temporal_client, task_queue=f"{settings.temporal.task_queue}-poll",
                        workflows=[CrmPollWorkflow], activities=CrmPollActivities(sessions, rig.drivers).all())
        async with worker, poller:
            first = await _tick(temporal_client, rig)
            assert first.new_events == 0  # the cursor starts now: no calls for the past
            contact = await rig.new_contact(phone=phone)
            ticks = [await _tick(temporal_client, rig) for _ in range(3)]
            assert [t.new_events for t in ticks] == [1, 0, 0]

            async def placed() -> CallRequest | None:
                async with sessions() as session:
                    call = (await session.execute(select(CallRequest).where(
                        CallRequest.tenant_id == rig.tenant_id))).scalar_one_or_none()
                return call if call is not None and call.delivered_at is not None else None

            call = await eventually(placed)
            assert call.external_id == contact and call.status == "placed"
            assert len(rig.dialer.calls) == 1
            async with sessions() as session:
                event = (await session.execute(select(InboundCrmEvent).where(
                    InboundCrmEvent.tenant_id == rig.tenant_id))).scalar_one()
            assert (event.source, event.object, event.external_id, event.kind) == ("poll", "customer", contact,
                                                                                   "created")


async def test_poll_schedule_is_idempotent(temporal_client: Client, task_queue: str) -> None:
    tenant_id = uuid.uuid4()
    assert await ensure_poll_schedule(temporal_client, tenant_id, ["lead"], task_queue) == "created"
    assert await ensure_poll_schedule(temporal_client, tenant_id, ["lead", "customer"], task_queue) == "updated"
    await remove_poll_schedule(temporal_client, tenant_id)


async def test_operator_enables_polling_with_validation(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client) -> None:
    async with webhook_rig(settings, engine, sessions, temporal_client) as rig:
        bad = await rig.api.put(rig.path("polling"), headers=rig.operator(), json={"objects": ["spaceship"]})
        assert bad.status_code == 422 and "spaceship" in bad.json()["errors"][0]
        first = await rig.api.put(rig.path("polling"), headers=rig.operator(), json={"objects": ["lead"]})
        again = await rig.api.put(rig.path("polling"), headers=rig.operator(),
                                  json={"objects": ["lead", "customer"], "every_minutes": 5})
        assert (first.json()["schedule"], again.json()["schedule"]) == ("created", "updated")
        described = await temporal_client.get_schedule_handle(f"crm-poll:{rig.tenant_id}").describe()
        assert described.schedule.spec.intervals[0].every.total_seconds() == 300
        await remove_poll_schedule(temporal_client, rig.tenant_id)
