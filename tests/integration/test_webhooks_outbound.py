"""End to end on the time-skipping server: a contact created in the HubSpot sandbox → a v3-signed webhook →
verified and stored → OutboundCallWorkflow → trigger → consent gates → one signed call request at the dialer.

The workflow's clock is the test server's: the test skips it to noon or 22:30 New York time first (the callee's
phone is a 212 number), while the webhook's own signature is checked against the wall clock.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from settings import Settings
from store.models import AuditLog
from store.outbound_models import CallRequest, InboundCrmEvent
from tests.support.lifecycle import eventually
from tests.support.webhooks import WebhookRig, webhook_rig
from tests.unit.workflows.test_forget_workflow import readable_history
from workflows.outbound_types import OutboundCallResult, outbound_call_workflow_id

pytestmark = [pytest.mark.integration]
HISTORY = Path(__file__).parents[1] / "histories" / "outbound_call_deferred_then_placed.json"
NY = ZoneInfo("America/New_York")


async def _skip_to(env: WorkflowEnvironment, local: time) -> datetime:
    """Advance the test server's clock to the next `local` New York time; that moment, in UTC."""
    now = await env.get_current_time()
    target = datetime.combine(now.astimezone(NY).date(), local, NY)
    if target <= now:
        target = datetime.combine(now.astimezone(NY).date() + timedelta(days=1), local, NY)
    await env.sleep(target - now)
    return target.astimezone(UTC)


async def _event_row(rig: WebhookRig) -> InboundCrmEvent:
    async with rig.sessions() as session:
        rows = (await session.execute(select(InboundCrmEvent).where(
            InboundCrmEvent.tenant_id == rig.tenant_id))).scalars().all()
    assert len(rows) == 1
    return rows[0]


async def _result(env: WorkflowEnvironment, rig: WebhookRig, event: InboundCrmEvent) -> OutboundCallResult:
    handle = env.client.get_workflow_handle(outbound_call_workflow_id(rig.tenant_id, event.id),
                                            result_type=OutboundCallResult)
    return await handle.result()


async def _call(rig: WebhookRig) -> CallRequest | None:
    async with rig.sessions() as session:
        return (await session.execute(select(CallRequest).where(CallRequest.tenant_id == rig.tenant_id))
                ).scalar_one_or_none()


async def _status(rig: WebhookRig, status: str) -> bool:
    call = await _call(rig)
    return call is not None and call.status == status


async def _audit(rig: WebhookRig) -> list[tuple[str, str]]:
    async with rig.sessions() as session:
        rows = (await session.execute(select(AuditLog).where(
            AuditLog.tenant_id == rig.tenant_id, AuditLog.action.like("outbound.%")).order_by(AuditLog.id))).scalars()
        return [(row.action, row.details["reason"]) for row in rows]


async def _contact_at(env: WorkflowEnvironment, rig: WebhookRig, local: time
                      ) -> tuple[datetime, str, InboundCrmEvent]:
    """At `local` New York time, a contact is created in the CRM and its webhook delivered (stored once)."""
    moment = await _skip_to(env, local)
    contact = await rig.new_contact()
    assert len(rig.crm.webhooks.pending) == 1
    assert await rig.crm.webhooks.flush() == 1
    return moment, contact, await _event_row(rig)


async def test_new_contact_at_noon_is_called_once_even_when_redelivered(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        time_skipping_env: WorkflowEnvironment) -> None:
    env = time_skipping_env
    async with webhook_rig(settings, engine, sessions, env.client) as rig, rig.worker(env.client):
        await rig.configure()
        noon, contact, event = await _contact_at(env, rig, time(12, 0))
        assert (event.provider, event.object, event.external_id, event.kind) == ("hubspot", "customer", contact,
                                                                                 "created")
        result = await _result(env, rig, event)
        assert (result.outcome, result.reason) == ("placed", "permitted")

        # HubSpot redelivers the same event (at-least-once): acked, not stored or processed again.
        rig.crm.webhooks.pending.extend(dict(e, attemptNumber=1) for e in rig.crm.webhooks.delivered)
        assert await rig.crm.webhooks.flush() == 1
        await _event_row(rig)
        call = await _call(rig)
        assert call is not None and call.status == "placed" and call.delivered_at is not None
        assert abs(call.placed_at - noon) < timedelta(minutes=1)  # type: ignore[operator]
        assert len(rig.dialer.posts) == 1 and len(rig.dialer.calls) == 1
        payload = rig.dialer.posts[0]["data"]
        assert payload["external_id"] == contact and payload["purpose"] == "new_lead_callback"
        assert "phone" not in str(rig.dialer.posts[0]) and "+1212" not in str(rig.dialer.posts[0])
        assert await _audit(rig) == [("outbound.placed", "permitted")]


async def test_at_2230_callee_time_the_call_waits_for_0800(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        time_skipping_env: WorkflowEnvironment) -> None:
    env = time_skipping_env
    async with webhook_rig(settings, engine, sessions, env.client) as rig, rig.worker(env.client):
        await rig.configure()
        late, _, event = await _contact_at(env, rig, time(22, 30))
        await eventually(lambda: _status(rig, "deferred"))
        # A handle got by id does not unlock time skipping on result(): skip past the night explicitly.
        await env.sleep(timedelta(hours=10))
        result = await _result(env, rig, event)
        assert result.outcome == "placed"
        call = await _call(rig)
        assert call is not None and call.placed_at is not None
        expected = datetime.combine(late.astimezone(NY).date() + timedelta(days=1), time(8, 0), NY)
        # Placed at the timer's firing: 08:00 New York time (plus the activity's milliseconds), not earlier.
        assert timedelta(0) <= call.placed_at - expected < timedelta(seconds=30)
        assert len(rig.dialer.calls) == 1
        assert await _audit(rig) == [("outbound.deferred", "quiet_hours"), ("outbound.placed", "permitted")]
        history = await env.client.get_workflow_handle(outbound_call_workflow_id(rig.tenant_id, event.id)
                                                      ).fetch_history()
        readable = readable_history(history.to_json())
        assert "2125550100" not in readable and "Lovelace" not in readable  # ids only in Temporal history
        if os.environ.get("CRM_RECORD_HISTORIES"):  # re-record after a deliberate, patched workflow change
            HISTORY.write_text(history.to_json())


async def test_consent_revoked_while_deferred_cancels_the_call(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        time_skipping_env: WorkflowEnvironment) -> None:
    env = time_skipping_env
    async with webhook_rig(settings, engine, sessions, env.client) as rig, rig.worker(env.client):
        await rig.configure()
        _, _, event = await _contact_at(env, rig, time(22, 30))
        await eventually(lambda: _status(rig, "deferred"))
        revoked = await rig.api.post(rig.path("consents/revoke"), headers=rig.operator(), json={
            "phone": "(212) 555-0100", "purpose": "new_lead_callback", "source": "sms:STOP"})
        assert revoked.status_code == 200 and revoked.json()["revoked"] == 1
        result = await _result(env, rig, event)
        assert (result.outcome, result.reason) == ("blocked", "consent_revoked")
        assert rig.dialer.posts == []
        assert await _audit(rig) == [("outbound.deferred", "quiet_hours"), ("outbound.blocked", "consent_revoked")]


async def test_no_consent_on_file_blocks_with_a_reason(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        time_skipping_env: WorkflowEnvironment) -> None:
    env = time_skipping_env
    async with webhook_rig(settings, engine, sessions, env.client) as rig, rig.worker(env.client):
        await rig.configure(phone=None)
        _, _, event = await _contact_at(env, rig, time(12, 0))
        result = await _result(env, rig, event)
        assert (result.outcome, result.reason) == ("blocked", "no_consent")
        assert rig.dialer.posts == []
