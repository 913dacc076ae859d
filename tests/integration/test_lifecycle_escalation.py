"""A CRM that fails for 48 simulated hours: one incident for the tenant at 24 h (with its row count, not one per
row), nothing purged, then one redrive → every row synced, incident resolved, the mirror completes. Also: auth_error
parks the mirror instead of burning retries until the connection is fixed, and a 429's Retry-After is waited out
on a durable timer. Time-skipping server, HubSpot sandbox."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from settings import Settings
from store import outbox
from store.models import Incident
from tests.support.histories import keep_history
from tests.support.lifecycle import eventually, is_closed, lifecycle_rig, operator_headers, row_of, synced
from vault.connections import Actor
from workflows.sweep import SweepWorkflow
from workflows.types import MirrorPolicy, SweepInput

pytestmark = [pytest.mark.integration]
HOUR = timedelta(hours=1)
# Production's 24 h escalation; a one-hour backoff cap keeps 48 simulated hours to ~50 real passes.
POLICY = MirrorPolicy(first_backoff=timedelta(seconds=1), max_backoff=HOUR)
ROWS = 3


async def _incidents(sessions: async_sessionmaker[AsyncSession], tenant: uuid.UUID) -> list[Incident]:
    async with sessions() as session:
        return list((await session.execute(select(Incident).where(Incident.tenant_id == tenant))).scalars())


async def _rows(sessions: async_sessionmaker[AsyncSession], tenant: uuid.UUID, ids: list[uuid.UUID]) -> list:  # type: ignore[type-arg]
    return [await row_of(sessions, "customers", tenant, i) for i in ids]


async def test_48_hours_of_crm_failure_then_redrive(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        time_skipping_env: WorkflowEnvironment, task_queue: str) -> None:
    env = time_skipping_env
    async with lifecycle_rig(settings, engine, sessions, env.client, task_queue, policy=POLICY) as rig:
        api, relay, tenant, hubspot = rig.api, rig.relay, rig.tenant, rig.hubspot
        hubspot.knobs.fail_next = 10**9  # every call answers 503
        ids = [uuid.UUID((await api.post("/api/agent/customers", json={"name": f"Linus Pauling{i}"})).json()["id"])
               for i in range(ROWS)]
        await relay.drain()
        start = await env.get_current_time()
        await eventually(lambda: _attempts_at_least(sessions, tenant, ids, 1))

        await env.sleep(start + 23 * HOUR - await env.get_current_time())
        assert await _incidents(sessions, tenant) == []
        await env.sleep(start + 25 * HOUR - await env.get_current_time())
        [incident] = await eventually(lambda: _incidents(sessions, tenant))  # one for the tenant, not one per row
        assert (incident.kind, incident.failure_kind, incident.status, incident.row_count) == \
            ("crm_sync_failure", "unavailable", "open", ROWS)
        assert incident.last_error == "unavailable:503" and incident.attempts >= 2

        await env.sleep(start + 48 * HOUR - await env.get_current_time())
        with env.auto_time_skipping_disabled():  # else the wait for its result skips years ahead
            sweep = await env.client.execute_workflow(SweepWorkflow.run, SweepInput(), id=f"sweep-{uuid.uuid4()}",
                                                      task_queue=task_queue)
        assert sweep.purged == 0  # nothing unsynced is ever purged, however old
        rows = await _rows(sessions, tenant, ids)
        assert all(r is not None and r.sync_state == "retrying" and r.purge_after is None for r in rows)
        [still] = await _incidents(sessions, tenant)
        assert still.id == incident.id and still.status == "open" and still.row_count == ROWS
        assert still.attempts > incident.attempts  # it kept trying, with capped backoff
        assert max(r.sync_attempts for r in rows) < 60  # …capped: about one attempt an hour, no retry storm
        assert hubspot.records.get("contacts", {}) == {}
        state = await env.client.get_workflow_handle(rig.mirror_id).query("sync_state")
        assert state == "retrying"

        listed = await api.get(f"/api/tenants/{tenant}/incidents?status=open", headers=operator_headers(settings))
        assert [(i["id"], i["row_count"]) for i in listed.json()["incidents"]] == [(str(incident.id), ROWS)]
        hubspot.knobs.fail_next = 0  # the CRM recovers; the next attempt is up to an hour away…
        redrive = await api.post(f"/api/tenants/{tenant}/incidents/{incident.id}/redrive",
                                 headers=operator_headers(settings, tenant))
        assert redrive.status_code == 202 and redrive.json()["rows"] == ROWS
        await relay.drain()  # …but the redrive retries every row of the incident now
        for row_id in ids:
            mirrored = await eventually(lambda r=row_id: synced(sessions, "customers", tenant, r))
            assert mirrored.purge_after - mirrored.synced_at == timedelta(days=30)
        [resolved] = await eventually(lambda: _resolved(sessions, tenant))
        assert resolved.id == incident.id and resolved.resolved_at is not None
        assert sorted(c.properties["lastname"] for c in hubspot.records["contacts"].values()) == \
            sorted(f"Pauling{i}" for i in range(ROWS))
        assert await eventually(lambda: is_closed(env.client, rig.mirror_id))  # nothing unsynced: it completed
        await keep_history(env.client, rig.mirror_id, "tenant_mirror_redrive")


async def test_auth_error_parks_the_mirror_until_the_connection_is_fixed(
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
        row = await eventually(lambda: _attempts_at_least(sessions, tenant, [row_id], 1))
        assert row.last_sync_error == "auth_error:400" and row.sync_state == "blocked"
        handle = env.client.get_workflow_handle(rig.mirror_id)
        assert await eventually(lambda: _state_is(handle, "blocked"))

        await env.sleep(2 * HOUR)  # a 15-minute slow look, not a retry storm
        row = await row_of(sessions, "customers", tenant, row_id)
        assert row is not None and 2 <= row.sync_attempts <= 10
        second = (await api.post("/api/agent/customers", json={"name": "Rita Levi-Montalcini"})).json()
        await relay.drain()  # new rows wake the mirror, but a parked mirror does not call the CRM for them
        attempts = row.sync_attempts
        row = await row_of(sessions, "customers", tenant, row_id)
        assert row is not None and row.sync_attempts == attempts

        drivers._sources.clear()  # the operator reconnected: fresh tokens
        await handle.signal("connection_fixed", {"tenant_id": str(tenant)})
        for customer_id in (customer["id"], second["id"]):
            mirrored = await eventually(lambda c=customer_id: synced(sessions, "customers", tenant, uuid.UUID(c)))
            assert mirrored.crm_external_id in hubspot.records["contacts"]


async def test_rate_limit_retry_after_is_waited_out_on_a_durable_timer(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client, task_queue: str) -> None:
    """On the dev server: 429 + Retry-After: 600 → the mirror sleeps 600 s on a timer (one timer, no retries)."""
    async with lifecycle_rig(settings, engine, sessions, temporal_client, task_queue, policy=POLICY) as rig:
        api, relay = rig.api, rig.relay
        rig.hubspot.knobs.limit_next, rig.hubspot.knobs.retry_after = 1, "600"
        await api.post("/api/agent/customers", json={"name": "Chien-Shiung Wu"})
        await relay.drain()
        handle = temporal_client.get_workflow_handle(rig.mirror_id)
        timer = await eventually(lambda: _timer(handle))
        assert timer.start_to_fire_timeout.ToTimedelta() >= timedelta(seconds=600)  # the server's Retry-After
        assert sum(rig.hubspot.calls.values()) == 1  # the one refused call, and nothing since
        await handle.terminate()


async def test_a_reconnect_wakes_the_parked_mirror(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client, task_queue: str) -> None:
    """Dev server: the `reconnected` intent the connect routes queue unparks the tenant's mirror (relayed as a
    signal, durable in the outbox)."""
    async with lifecycle_rig(settings, engine, sessions, temporal_client, task_queue, policy=POLICY) as rig:
        async with rig.drivers.open(rig.tenant, Actor(type="system", id="test", purpose="connect")):
            pass
        rig.hubspot.tokens.expire_all()
        rig.hubspot.tokens.revoke_refresh()
        customer = (await rig.api.post("/api/agent/customers", json={"name": "Margaret Hamilton"})).json()
        await rig.relay.drain()
        handle = temporal_client.get_workflow_handle(rig.mirror_id)
        assert await eventually(lambda: _state_is(handle, "blocked"))
        rig.drivers._sources.clear()  # reconnected
        async with sessions() as session, session.begin():
            await outbox.add(session, [outbox.intent_values(rig.tenant, "tenants", rig.tenant, "reconnected")])
        await rig.relay.drain()
        await eventually(lambda: synced(sessions, "customers", rig.tenant, uuid.UUID(customer["id"])))
        assert await eventually(lambda: is_closed(temporal_client, rig.mirror_id))


async def _attempts_at_least(sessions: async_sessionmaker[AsyncSession], tenant: uuid.UUID, ids: list[uuid.UUID],
                             n: int):  # type: ignore[no-untyped-def]
    rows = [await row_of(sessions, "customers", tenant, i) for i in ids]
    return rows[0] if all(r is not None and r.sync_attempts >= n for r in rows) else None


async def _resolved(sessions: async_sessionmaker[AsyncSession], tenant: uuid.UUID) -> list[Incident] | None:
    found = await _incidents(sessions, tenant)
    return found if found and all(i.status == "resolved" for i in found) else None


async def _state_is(handle, state: str) -> bool:  # type: ignore[no-untyped-def]
    return bool(await handle.query("sync_state") == state)


async def _timer(handle):  # type: ignore[no-untyped-def]
    history = await handle.fetch_history()
    timers = [e.timer_started_event_attributes for e in history.events if e.HasField("timer_started_event_attributes")]
    return timers[-1] if timers else None
