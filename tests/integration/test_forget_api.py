"""The operator's erasure routes end to end: API → Temporal dev server → worker → database and sandbox CRM."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.app import create_app
from api.auth import mint_token
from api.context import AppContext
from api.routes.forget import FORGET_DEFAULTS_KEY
from api.temporal import TemporalGateway
from settings import Settings, TemporalSettings
from store.models import AuditLog, ErasureRequest
from tests.integration.forget_support import EMAIL, PHONE, SandboxDrivers, count_rows, forget_worker, seed_subject
from workflows.forget_types import forget_workflow_id

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
FAST = {"crm_attempts": 2, "crm_initial_retry_seconds": 0.1, "crm_max_retry_seconds": 0.2}


@pytest_asyncio.fixture(loop_scope="session")
async def ctx(settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
              temporal_client: Client) -> AppContext:
    return AppContext(settings=settings, engine=engine, sessions=sessions,
                      temporal=TemporalGateway(settings.temporal, client=temporal_client),
                      extras={FORGET_DEFAULTS_KEY: FAST})


@pytest_asyncio.fixture(loop_scope="session")
async def api(ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(context=ctx)),
                                 base_url="http://api") as client:
        yield client


def operator(settings: Settings, tenant_id: uuid.UUID | None) -> dict[str, str]:
    token = mint_token(settings, subject="op-7", role="operator", tenant_id=tenant_id)
    return {"Authorization": f"Bearer {token}"}


async def finished(client: Client, tenant_id: uuid.UUID, subject_hash: str) -> Any:
    return await client.get_workflow_handle(forget_workflow_id(tenant_id, subject_hash)).result()


async def test_operator_erases_a_subject_and_reads_the_outcomes(
        api: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client) -> None:
    drivers = SandboxDrivers()
    seeded = await seed_subject(sessions, drivers)
    headers = operator(settings, seeded.tenant_id)
    async with forget_worker(temporal_client, settings, sessions, drivers, settings.temporal.task_queue):
        response = await api.post("/api/tenant/forget", json={"phone": PHONE, "email": EMAIL}, headers=headers)
        assert response.status_code == 202
        accepted = response.json()
        await finished(temporal_client, seeded.tenant_id, accepted["subject_hash"])
    status = await api.get(f"/api/tenant/forget/{accepted['request_id']}", headers=headers)
    assert status.status_code == 200
    body = status.json()
    assert body["status"] == "completed" and body["local_rows_scrubbed"] == 8
    assert body["identifiers_retained"] is False and body["needs_operator"] == 0
    assert sorted((o["object"], o["outcome"]) for o in body["outcomes"]) == [
        ("appointment", "archived"), ("case", "archived"), ("customer", "deleted"), ("lead", "deleted"),
        ("note", "archived")]
    assert all((o["provider_purge_after"] is not None) == (o["outcome"] == "archived") for o in body["outcomes"])
    assert await count_rows(sessions, seeded.rows) == 0
    assert not drivers.exists(*seeded.crm["contact"])
    async with sessions() as session:
        requested = (await session.execute(select(AuditLog).where(
            AuditLog.request_id == accepted["request_id"], AuditLog.action == "erasure.requested"))).scalar_one()
    assert requested.actor_type == "platform_operator" and requested.actor_id == "op-7"
    assert requested.subject_hash == accepted["subject_hash"]


async def test_a_repeated_request_attaches_to_the_running_erasure(
        api: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client) -> None:
    drivers = SandboxDrivers()
    seeded = await seed_subject(sessions, drivers)
    headers = operator(settings, seeded.tenant_id)
    # No worker yet, so the first erasure is certainly still running when the repeats arrive.
    first = (await api.post("/api/tenant/forget", json={"phone": PHONE, "email": EMAIL}, headers=headers)).json()
    again = await api.post("/api/tenant/forget", json={"phone": "(415) 555-0123", "email": EMAIL.upper()},
                           headers=headers)
    assert again.status_code == 202
    assert again.json()["request_id"] == first["request_id"] and again.json()["attached"] is True
    async with forget_worker(temporal_client, settings, sessions, drivers, settings.temporal.task_queue):
        result = await finished(temporal_client, seeded.tenant_id, first["subject_hash"])
    assert result["status"] == "completed"
    async with sessions() as session:
        rows = (await session.execute(select(ErasureRequest.id).where(
            ErasureRequest.tenant_id == seeded.tenant_id))).scalars()
        assert [str(r) for r in rows] == [first["request_id"]]


async def test_failed_crm_steps_show_up_and_the_retry_route_finishes_them(
        api: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client) -> None:
    drivers = SandboxDrivers()
    seeded = await seed_subject(sessions, drivers)
    headers = operator(settings, seeded.tenant_id)
    drivers.state.knobs.fail_next = 10_000
    async with forget_worker(temporal_client, settings, sessions, drivers, settings.temporal.task_queue):
        accepted = (await api.post("/api/tenant/forget", json={"email": EMAIL, "phone": PHONE},
                                   headers=headers)).json()
        await finished(temporal_client, seeded.tenant_id, accepted["subject_hash"])
        url = f"/api/tenant/forget/{accepted['request_id']}"
        body = (await api.get(url, headers=headers)).json()
        assert body["status"] == "needs_attention" and body["error"] == "discover:unavailable"
        assert body["identifiers_retained"] is True
        assert {o["outcome"] for o in body["outcomes"]} == {"failed"}

        drivers.state.knobs.fail_next = 0
        retry = await api.post(f"{url}/retry", headers=headers)
        assert retry.status_code == 202
        await finished(temporal_client, seeded.tenant_id, accepted["subject_hash"])
    body = (await api.get(url, headers=headers)).json()
    assert body["status"] == "completed" and {o["outcome"] for o in body["outcomes"]} <= {"deleted", "archived"}
    assert body["identifiers_retained"] is False
    nothing_left = await api.post(f"{url}/retry", headers=headers)
    assert nothing_left.status_code == 409 and nothing_left.json()["type"].endswith("/nothing-to-retry")


@pytest.mark.parametrize(("body", "status", "slug"), [
    ({}, 422, "no-identifiers"),
    ({"phone": "call me maybe"}, 422, "invalid-phone"),
    ({"email": "nobody at all"}, 422, "invalid-email"),
    ({"email": EMAIL, "tenant_id": str(uuid.uuid4())}, 422, "invalid-body"),
    ({"customer_id": "nope"}, 422, "invalid-body"),
    ({"external_id": ""}, 422, "invalid-body"),
    ([PHONE], 422, "invalid-body"),
])
async def test_bad_bodies_are_problems_that_do_not_echo_the_input(
        api: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        body: Any, status: int, slug: str) -> None:
    seeded = await seed_subject(sessions, SandboxDrivers())
    response = await api.post("/api/tenant/forget", json=body, headers=operator(settings, seeded.tenant_id))
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith(f"/{slug}")
    assert "call me maybe" not in response.text and "nobody at all" not in response.text


async def test_credentials_decide_the_tenant_and_who_may_ask(
        api: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    seeded = await seed_subject(sessions, SandboxDrivers())
    body = {"email": EMAIL}
    assert (await api.post("/api/tenant/forget", json=body)).status_code == 401
    agent = mint_token(settings, subject="agent", role="agent", tenant_id=seeded.tenant_id)
    as_agent = await api.post("/api/tenant/forget", json=body, headers={"Authorization": f"Bearer {agent}"})
    assert as_agent.status_code == 403
    platform = await api.post("/api/tenant/forget", json=body, headers=operator(settings, None))
    assert platform.status_code == 403 and platform.json()["type"].endswith("/tenant-required")
    nowhere = await api.post("/api/tenant/forget", json=body, headers=operator(settings, uuid.uuid4()))
    assert nowhere.status_code == 404
    malformed = await api.post("/api/tenant/forget", content=b"{", headers=operator(settings, seeded.tenant_id))
    assert malformed.status_code == 400


async def test_requests_are_visible_only_to_their_tenant(
        api: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client) -> None:
    drivers = SandboxDrivers()
    seeded = await seed_subject(sessions, drivers)
    accepted = (await api.post("/api/tenant/forget", json={"email": EMAIL},
                               headers=operator(settings, seeded.tenant_id))).json()
    other = await seed_subject(sessions, drivers)
    url = f"/api/tenant/forget/{accepted['request_id']}"
    assert (await api.get(url, headers=operator(settings, other.tenant_id))).status_code == 404
    assert (await api.post(f"{url}/retry", headers=operator(settings, other.tenant_id))).status_code == 404
    assert (await api.get(f"/api/tenant/forget/{uuid.uuid4()}", headers=operator(settings, seeded.tenant_id))
            ).status_code == 404
    assert (await api.get("/api/tenant/forget/not-a-uuid", headers=operator(settings, seeded.tenant_id))
            ).status_code == 404
    running = await api.post(f"{url}/retry", headers=operator(settings, seeded.tenant_id))
    assert running.status_code == 409  # still running: nothing to retry
    async with forget_worker(temporal_client, settings, sessions, drivers, settings.temporal.task_queue):
        await finished(temporal_client, seeded.tenant_id, accepted["subject_hash"])


async def test_temporal_down_keeps_the_request_and_a_repeat_starts_it(
        ctx: AppContext, api: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        engine: AsyncEngine, temporal_client: Client) -> None:
    drivers = SandboxDrivers()
    seeded = await seed_subject(sessions, drivers)
    headers = operator(settings, seeded.tenant_id)
    down = AppContext(settings=settings, engine=engine, sessions=sessions,
                      temporal=TemporalGateway(TemporalSettings(address="127.0.0.1:1")), extras=ctx.extras)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(context=down)),
                                 base_url="http://api") as unreachable:
        refused = await unreachable.post("/api/tenant/forget", json={"email": EMAIL}, headers=headers)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
    kept = refused.json()["request_id"]
    repeat = await api.post("/api/tenant/forget", json={"email": EMAIL}, headers=headers)
    assert repeat.status_code == 202 and repeat.json()["request_id"] == kept
    async with forget_worker(temporal_client, settings, sessions, drivers, settings.temporal.task_queue):
        result = await finished(temporal_client, seeded.tenant_id, repeat.json()["subject_hash"])
    assert result["status"] == "completed"
