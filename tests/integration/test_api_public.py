"""POST /v1/crm/create-record: keys, idempotency (replay / 422 / 409), CRM failures, over the real store."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.idempotency import STALE_AFTER
from drivers.idempotency import request_fingerprint
from settings import Settings
from store.base import utcnow
from store.models import IdempotencyRecord
from tests.unit.api.support import SandboxProvider, client_for, context, key_headers, make_key, make_tenant

pytestmark = pytest.mark.integration

CREATE = "/v1/crm/create-record"
CRM_CREATE = "POST /crm/v3/objects/{object_type}"


@pytest.fixture
def provider() -> SandboxProvider:
    return SandboxProvider()


@pytest_asyncio.fixture(loop_scope="session")
async def api(settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
              provider: SandboxProvider) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(context(settings, engine, sessions, provider)) as client:
        yield client


async def connected(sessions: async_sessionmaker[AsyncSession], provider: SandboxProvider) -> tuple[uuid.UUID, str]:
    tenant = await make_tenant(sessions)
    provider.connect(tenant)
    return tenant, (await make_key(sessions, tenant)).key


def body(key: str, last_name: str = "Ortiz") -> dict[str, object]:
    return {"object": "customer", "fields": {"first_name": "Ana", "last_name": last_name, "city": "Quito"},
            "idempotency_key": key}


async def test_create_then_replay_the_same_answer_without_a_second_crm_call(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], provider: SandboxProvider) -> None:
    tenant, key = await connected(sessions, provider)
    first = await api.post(CREATE, json=body("order-1"), headers=key_headers(key))
    assert first.status_code == 201
    assert set(first.json()) == {"external_id", "record_url"} and first.json()["record_url"].startswith("https://")
    calls = provider.state(tenant).calls[CRM_CREATE]
    again = await api.post(CREATE, json=body("order-1"), headers=key_headers(key))
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert provider.state(tenant).calls[CRM_CREATE] == calls
    assert len(provider.state(tenant).records["contacts"]) == 1


async def test_same_key_with_a_different_body_is_422(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], provider: SandboxProvider) -> None:
    tenant, key = await connected(sessions, provider)
    assert (await api.post(CREATE, json=body("order-2"), headers=key_headers(key))).status_code == 201
    response = await api.post(CREATE, json=body("order-2", last_name="Other"), headers=key_headers(key))
    assert response.status_code == 422 and response.json()["type"].endswith("/idempotency-key-reused")
    assert len(provider.state(tenant).records["contacts"]) == 1


async def test_same_key_while_the_first_is_running_is_409_then_replays(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], provider: SandboxProvider) -> None:
    tenant, key = await connected(sessions, provider)
    provider.gate = asyncio.Event()
    first = asyncio.create_task(api.post(CREATE, json=body("order-3"), headers=key_headers(key)))
    await provider.entered.wait()  # the first request is inside the CRM create, holding its claim
    second = await api.post(CREATE, json=body("order-3"), headers=key_headers(key))
    assert second.status_code == 409 and second.json()["type"].endswith("/idempotency-in-progress")
    assert second.headers["Retry-After"] == "1"
    provider.gate.set()
    assert (await first).status_code == 201
    third = await api.post(CREATE, json=body("order-3"), headers=key_headers(key))
    assert third.status_code == 201 and third.json() == (await first).json()
    assert len(provider.state(tenant).records["contacts"]) == 1


async def test_a_failed_attempt_can_be_retried_with_the_same_key(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], provider: SandboxProvider) -> None:
    tenant, key = await connected(sessions, provider)
    provider.state(tenant).knobs.fail_next = 1
    failed = await api.post(CREATE, json=body("order-4"), headers=key_headers(key))
    assert failed.status_code == 503 and failed.json()["reason"] == "crm_unavailable"
    assert failed.headers["content-type"] == "application/problem+json"
    retried = await api.post(CREATE, json=body("order-4"), headers=key_headers(key))
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried.headers
    provider.state(tenant).knobs.limit_next, provider.state(tenant).knobs.retry_after = 1, "9"
    throttled = await api.post(CREATE, json=body("order-5"), headers=key_headers(key))
    assert throttled.status_code == 503 and throttled.json()["reason"] == "crm_rate_limited"
    assert throttled.headers["Retry-After"] == "9"


async def test_a_claim_left_by_a_crashed_request_is_taken_over_without_a_duplicate(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], provider: SandboxProvider) -> None:
    tenant, key = await connected(sessions, provider)
    request = body("order-6")
    fingerprint = request_fingerprint("customer", request["fields"])  # type: ignore[arg-type]
    async with sessions.begin() as session:
        session.add(IdempotencyRecord(tenant_id=tenant, scope="api:create-record", key="order-6",
                                      fingerprint=fingerprint, status="pending",
                                      created_at=utcnow() - STALE_AFTER - timedelta(seconds=1)))
    response = await api.post(CREATE, json=request, headers=key_headers(key))
    assert response.status_code == 201
    async with sessions() as session:
        row = await session.scalar(select(IdempotencyRecord).where(IdempotencyRecord.tenant_id == tenant))
    assert row is not None and row.status == "done" and row.external_id == response.json()["external_id"]


async def test_idempotency_keys_belong_to_one_tenant(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], provider: SandboxProvider) -> None:
    tenant_a, key_a = await connected(sessions, provider)
    tenant_b, key_b = await connected(sessions, provider)
    a = await api.post(CREATE, json=body("shared-key"), headers=key_headers(key_a))
    b = await api.post(CREATE, json=body("shared-key", last_name="Bee"), headers=key_headers(key_b))
    assert a.status_code == b.status_code == 201 and "Idempotent-Replayed" not in b.headers
    (contact_a,) = provider.state(tenant_a).records["contacts"].values()
    (contact_b,) = provider.state(tenant_b).records["contacts"].values()
    assert contact_a.properties["lastname"] == "Ortiz" and contact_b.properties["lastname"] == "Bee"
    assert [t for t, _ in provider.actors] == [tenant_a, tenant_b]


async def test_a_tenant_without_a_connected_crm_gets_a_clear_4xx(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = await make_tenant(sessions, status="pending")
    key = await make_key(sessions, tenant)
    response = await api.post(CREATE, json=body("order-7"), headers=key_headers(key))
    assert response.status_code == 409 and response.json()["reason"] == "crm_not_connected"
    retried = await api.post(CREATE, json=body("order-7"), headers=key_headers(key))
    assert retried.status_code == 409 and retried.json()["reason"] == "crm_not_connected"  # claim released


async def test_the_key_is_audited_by_id_never_by_value(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], provider: SandboxProvider) -> None:
    tenant, key = await connected(sessions, provider)
    await api.post(CREATE, json=body("order-8"), headers=key_headers(key) | {"X-Request-ID": "r-8"})
    ((_, actor),) = provider.actors
    assert actor.id.startswith("api_key:") and key not in actor.id and actor.request_id == "r-8"
