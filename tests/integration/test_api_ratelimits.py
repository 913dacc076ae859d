"""Both rate limits through the app, shared by two app instances over one Redis, and failing open."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.ratelimit import RateLimiter
from settings import RateLimitSettings, Settings
from tests.support.network import closed_port, silent_server
from tests.unit.api.support import (
    SandboxProvider,
    agent_headers,
    client_for,
    context,
    key_headers,
    make_key,
    make_tenant,
)

pytestmark = pytest.mark.integration

LOOKUP = "/api/tools/crm_lookup_customer"


def exact(settings: Settings, redis_url: str | None = None) -> Settings:
    """The production limits, with a Redis timeout no loaded test machine will hit, so counts are exact."""
    limits = RateLimitSettings(redis_timeout_seconds=2.0)
    assert (limits.per_api_key, limits.per_tenant_tool) == ("200/minute", "50/minute")
    return settings.model_copy(update={"rate_limits": limits, "redis_url": redis_url or settings.redis_url})


@pytest_asyncio.fixture(loop_scope="session")
async def two_apps(settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
                   ) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, SandboxProvider]]:
    """Two API processes' worth of app (own contexts, own limiters) sharing the database and Redis."""
    provider = SandboxProvider()
    async with client_for(context(exact(settings), engine, sessions, provider)) as one, \
            client_for(context(exact(settings), engine, sessions, provider)) as two:
        yield one, two, provider


async def test_per_tenant_tool_limit_is_shared_across_instances(
        two_apps: tuple[httpx.AsyncClient, httpx.AsyncClient, SandboxProvider], settings: Settings,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    one, two, provider = two_apps
    tenant = await make_tenant(sessions)
    provider.connect(tenant)
    headers = agent_headers(settings, tenant)
    answers = [await (one if n % 2 else two).post(LOOKUP, json={"phone": "+15550000001"}, headers=headers)
               for n in range(50)]
    assert [a.status_code for a in answers] == [200] * 50
    for app in (one, two):
        refused = await app.post(LOOKUP, json={"phone": "+15550000001"}, headers=headers)
        assert refused.status_code == 429 and refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["ok"] is False and refused.json()["reason"] == "tool_rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert refused.headers["RateLimit-Limit"] == "50" and refused.headers["RateLimit-Remaining"] == "0"
        assert refused.headers["RateLimit-Policy"] == "50;w=60"
    # The limit is per (tenant, tool): another tool of the tenant, and another tenant, still go through.
    other_tool = await one.post("/api/tools/crm_list_recent", json={"object": "customer"}, headers=headers)
    assert other_tool.status_code == 200
    other_tenant = uuid.uuid4()
    provider.connect(other_tenant)
    assert (await two.post(LOOKUP, json={"phone": "+15550000001"},
                           headers=agent_headers(settings, other_tenant))).status_code == 200


async def test_per_key_limit_is_shared_across_instances(
        two_apps: tuple[httpx.AsyncClient, httpx.AsyncClient, SandboxProvider],
        sessions: async_sessionmaker[AsyncSession]) -> None:
    one, two, provider = two_apps
    tenant = await make_tenant(sessions)
    provider.connect(tenant)
    key, spare = await make_key(sessions, tenant), await make_key(sessions, tenant)

    async def create(app: httpx.AsyncClient, n: int, api_key: str) -> httpx.Response:
        return await app.post("/v1/crm/create-record", headers=key_headers(api_key), json={
            "object": "customer", "fields": {"last_name": f"Limit{n}"}, "idempotency_key": f"k-{n}"})

    # Every authenticated request counts, so the cheap half of them are bodies the route refuses (422).
    statuses = []
    for n in range(200):
        app = one if n % 2 else two
        if n % 4 == 0:
            statuses.append((await create(app, n, key.key)).status_code)
        else:
            statuses.append((await app.post("/v1/crm/create-record", json={}, headers=key_headers(key))).status_code)
    assert statuses.count(201) == 50 and statuses.count(422) == 150
    for app in (one, two):
        refused = await create(app, 999, key.key)
        assert refused.status_code == 429 and refused.json()["type"].endswith("/rate-limited")
        assert refused.headers["RateLimit-Limit"] == "200" and int(refused.headers["Retry-After"]) >= 1
    assert (await create(one, 1000, spare.key)).status_code == 201  # per key, not per tenant


@pytest_asyncio.fixture(loop_scope="session")
async def hanging_redis_url() -> AsyncIterator[str]:
    async with silent_server() as server:
        yield f"redis://127.0.0.1:{server.port}/0"


@pytest.mark.parametrize("redis_state", ["stopped", "hanging"])
async def test_requests_go_through_when_redis_is_down(
        redis_state: str, hanging_redis_url: str, settings: Settings, engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0" if redis_state == "stopped" else hanging_redis_url
    down = settings.model_copy(update={"redis_url": url, "rate_limits": RateLimitSettings(
        redis_timeout_seconds=0.1, breaker_failures=3, breaker_cooldown_seconds=300)})
    provider = SandboxProvider()
    tenant = await make_tenant(sessions)
    provider.connect(tenant)
    ctx = context(down, engine, sessions, provider)
    async with client_for(ctx) as api:
        answers = [await api.post(LOOKUP, json={"phone": "+15550000002"}, headers=agent_headers(down, tenant))
                   for _ in range(60)]
        limiter = ctx.extras["ratelimiter"]
        assert isinstance(limiter, RateLimiter)
        counters = dict(limiter.counters)
    assert [a.status_code for a in answers] == [200] * 60  # past the limit of 50: failing open
    failures = counters.pop("redis_errors" if redis_state == "stopped" else "redis_timeouts")
    assert failures == 3 and counters == {"skipped": 57, "breaker_opened": 1}
