"""A CRM that fails for 48 simulated hours: one incident at 24 h, nothing purged, then redrive → synced,
incident resolved, purged after the window. Also: auth_error waits instead of burning retries, and a 429's
Retry-After sets the next attempt. Time-skipping server, HubSpot sandbox."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.lifecycle import notify_connection_fixed
from settings import Settings
from store.models import Incident
from tests.support.lifecycle import eventually, is_running, lifecycle_rig, operator_headers, row_of, synced
from vault.connections import Actor
from workflows.types import LifecyclePolicy

pytestmark = [pytest.mark.integration]
HOUR = timedelta(hours=1)
# Production's 24 h escalation; a one-hour backoff cap keeps 48 simulated hours to ~50 real attempts.
POLICY = LifecyclePolicy(first_backoff=timedelta(seconds=1), max_backoff=HOUR, crm_timeout=timedelta(seconds=20))


async def _incidents(sessions: async_sessionmaker[AsyncSession], tenant: uuid.UUID) -> list[Incident]:
    async with sessions() as session:
        return list((await session.execute(select(Incident).where(Incident.tenant_id == tenant))).scalars())


async def test_48_hours_of_crm_failure_then_redrive(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        time_skipping_env: WorkflowEnvironment, task_queue: str) -> None:
    env = time_skipping_env
    async with lifecycle_rig(settings, engine, sessions, env.client, task_queue, policy=POLICY) as rig:
        api, relay, tenant, hubspot = rig.api, rig.relay, rig.tenant, rig.hubspot
        hubspot.knobs.fail_next = 10**9  # every call answers 503
        customer = (await api.post("/api/agent/customers", json={"name": "Linus Pauling"})).json()
        row_id = uuid.UUID(customer["id"])
        await relay.drain()
        start = await env.get_current_time()
        await eventually(lambda: _attempts_at_least(sessions, tenant, row_id, 1))

        await env.sleep(start + 23 * HOUR - await env.get_current_time())
        assert await _incidents(sessions, tenant) == []
        await env.sleep(start + 25 * HOUR - await env.get_current_time())
        [incident] = await eventually(lambda: _incidents(sessions, tenant))
        assert (incident.kind, incident.status, incident.table_name, incident.row_id) == \
            ("crm_sync_failure", "open", "customers", row_id)
        assert incident.last_error == "unavailable:503" and incident.attempts >= 2

        await env.sleep(start + 48 * HOUR - await env.get_current_time())
        row = await row_of(sessions, "customers", tenant, row_id)
        assert row is not None and row.sync_state == "failed" and row.purge_after is None
        assert row.sync_attempts > incident.attempts  # it kept trying, with capped backoff
        [still] = await _incidents(sessions, tenant)
        assert still.id == incident.id and still.status == "open" and still.attempts == row.sync_attempts
        assert hubspot.records.get("contacts", {}) == {}

        listed = await api.get(f"/api/tenants/{tenant}/incidents?status=open", headers=operator_headers(settings))
        assert [i["id"] for i in listed.json()["incidents"]] == [str(incident.id)]
        hubspot.knobs.fail_next = 0  # the CRM recovers; the next attempt is up to an hour away…
        redrive = await api.post(f"/api/tenants/{tenant}/incidents/{incident.id}/redrive",
                                 headers=operator_headers(settings, tenant))
        assert redrive.status_code == 202
        await relay.drain()  # …but the redrive signal retries now
        mirrored = await eventually(lambda: synced(sessions, "customers", tenant, row_id))
        assert mirrored.synced_at is not None and mirrored.purge_after - mirrored.synced_at == timedelta(days=30)
        [resolved] = await _incidents(sessions, tenant)
        assert resolved.status == "resolved" and resolved.resolved_at is not None
        assert [c.properties["lastname"] for c in hubspot.records["contacts"].values()] == ["Pauling"]

        await env.sleep(mirrored.purge_after - timedelta(minutes=1) - await env.get_current_time())
        assert await row_of(sessions, "customers", tenant, row_id) is not None
        await env.sleep(timedelta(minutes=2))
        await eventually(lambda: _gone(sessions, tenant, row_id))
        assert not await is_running(env.client, customer["workflow_id"])


async def test_auth_error_waits_for_the_connection_instead_of_retrying(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        time_skipping_env: WorkflowEnvironment, task_queue: str) -> None:
    env = time_skipping_env
    async with lifecycle_rig(settings, engine, sessions, env.client, task_queue, policy=POLICY) as rig:
        api, relay, tenant, hubspot, drivers = rig.api, rig.relay, rig.tenant, rig.hubspot, rig.drivers
        async with drivers.open(tenant, Actor(type="system", id="test", purpose="connect")):
            pass  # the tenant's connection exists…
        hubspot.tokens.expire_all()
        hubspot.tokens.revoke_refresh()  # …then the tenant revoked our app: every refresh is refused
        customer = (await api.post("/api/agent/customers", json={"name": "Rosalind Franklin"})).json()
        row_id = uuid.UUID(customer["id"])
        await relay.drain()
        row = await eventually(lambda: _attempts_at_least(sessions, tenant, row_id, 1))
        assert row.last_sync_error == "auth_error:400"
        handle = env.client.get_workflow_handle(customer["workflow_id"])
        assert await eventually(lambda: _state_is(handle, "auth_wait"))

        await env.sleep(2 * HOUR)  # a 15-minute slow poll, not a retry storm
        row = await row_of(sessions, "customers", tenant, row_id)
        assert row is not None and 2 <= row.sync_attempts <= 10

        drivers._sources.clear()  # the operator reconnected: fresh tokens
        await handle.signal("connection_fixed", {"tenant_id": str(tenant)})
        mirrored = await eventually(lambda: synced(sessions, "customers", tenant, row_id))
        assert mirrored.crm_external_id in hubspot.records["contacts"]


async def test_rate_limit_retry_after_sets_the_next_attempt(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client, task_queue: str) -> None:
    """On the dev server (the test server does not report pending attempts): 429 + Retry-After: 600."""
    async with lifecycle_rig(settings, engine, sessions, temporal_client, task_queue, policy=POLICY) as rig:
        api, relay, tenant = rig.api, rig.relay, rig.tenant
        rig.hubspot.knobs.limit_next, rig.hubspot.knobs.retry_after = 1, "600"
        customer = (await api.post("/api/agent/customers", json={"name": "Chien-Shiung Wu"})).json()
        await relay.drain()
        handle = temporal_client.get_workflow_handle(customer["workflow_id"])
        pending = await eventually(lambda: _pending_retry(handle))
        assert pending.last_failure.application_failure_info.type == "RateLimitedError"
        gap = pending.next_attempt_schedule_time.ToDatetime() - pending.last_started_time.ToDatetime()
        assert gap >= timedelta(seconds=600)  # the server's Retry-After, not our 1-second first backoff
        await handle.signal("redrive", {})  # an operator does not have to wait for it
        await eventually(lambda: synced(sessions, "customers", tenant, uuid.UUID(customer["id"])))


async def _attempts_at_least(sessions: async_sessionmaker[AsyncSession], tenant: uuid.UUID, row_id: uuid.UUID,
                             n: int):  # type: ignore[no-untyped-def]
    row = await row_of(sessions, "customers", tenant, row_id)
    return row if row is not None and row.sync_attempts >= n else None



async def _gone(sessions: async_sessionmaker[AsyncSession], tenant: uuid.UUID, row_id: uuid.UUID) -> bool:
    return await row_of(sessions, "customers", tenant, row_id) is None


async def _state_is(handle, state: str) -> bool:  # type: ignore[no-untyped-def]
    return bool(await handle.query("sync_state") == state)


async def _pending_retry(handle):  # type: ignore[no-untyped-def]
    description = await handle.describe()
    pending = description.raw_description.pending_activities
    return pending[0] if pending and pending[0].HasField("last_failure") else None


async def test_a_reconnect_wakes_lifecycles_waiting_on_auth(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client, task_queue: str) -> None:
    """Dev server (visibility): `notify_connection_fixed` finds the tenant's auth_wait runs and wakes them."""
    async with lifecycle_rig(settings, engine, sessions, temporal_client, task_queue, policy=POLICY) as rig:
        async with rig.drivers.open(rig.tenant, Actor(type="system", id="test", purpose="connect")):
            pass
        rig.hubspot.tokens.expire_all()
        rig.hubspot.tokens.revoke_refresh()
        customer = (await rig.api.post("/api/agent/customers", json={"name": "Margaret Hamilton"})).json()
        await rig.relay.drain()
        handle = temporal_client.get_workflow_handle(customer["workflow_id"])
        assert await eventually(lambda: _state_is(handle, "auth_wait"))
        rig.drivers._sources.clear()  # reconnected
        assert await eventually(lambda: notify_connection_fixed(temporal_client, rig.tenant)) == 1
        await eventually(lambda: synced(sessions, "customers", rig.tenant, uuid.UUID(customer["id"])))
