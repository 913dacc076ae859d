"""Provider budgets on a real Redis: shared windows, tool headroom, scopes, the provider's own signals, the
fallback when Redis is away — and the HubSpot sandbox never answering 429 to budgeted callers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from redis.asyncio import BlockingConnectionPool, Redis

from drivers import errors
from drivers.base import CrmObject
from drivers.budget import ProviderBudget, attach
from drivers.hubspot import HubSpotDriver
from drivers.provider import RateLimit
from sandboxes import hubspot as hubspot_sandbox
from tests.support.network import closed_port

LIMITS = (RateLimit(10, 60.0), RateLimit(3, 60.0, scope="search"))


@pytest_asyncio.fixture(loop_scope="session")
async def redis(redis_url: str) -> AsyncIterator[Redis]:  # type: ignore[type-arg]
    pool = BlockingConnectionPool.from_url(redis_url, max_connections=16, timeout=5)
    client: Redis = Redis(connection_pool=pool)  # type: ignore[type-arg]
    yield client
    await client.aclose()
    await pool.disconnect()


async def _takes(budget: ProviderBudget, tenant: uuid.UUID, n: int, scope: str = "all",
                 priority: str = "mirror") -> list[bool]:
    return [(await budget.take(tenant, "acme", LIMITS, scope, priority)).allowed  # type: ignore[arg-type]
            for _ in range(n)]


async def test_the_mirror_leaves_headroom_that_only_tools_may_use(redis: Redis) -> None:  # type: ignore[type-arg]
    budget, tenant = ProviderBudget(redis, tool_reserve=0.2), uuid.uuid4()
    assert await _takes(budget, tenant, 9) == [True] * 8 + [False]  # 80% of 10
    refused = await budget.take(tenant, "acme", LIMITS, "all", "mirror")
    assert not refused.allowed and 0 < refused.wait <= 60 and not refused.degraded
    assert await _takes(budget, tenant, 3, priority="tool") == [True, True, False]  # the reserve, then the limit


async def test_processes_share_one_window_through_redis(redis: Redis) -> None:  # type: ignore[type-arg]
    first, second, tenant = ProviderBudget(redis), ProviderBudget(redis), uuid.uuid4()
    assert await _takes(first, tenant, 5) == [True] * 5
    assert await _takes(second, tenant, 5) == [True] * 4 + [False]  # 9 = floor(10 x 0.9) between them
    assert await _takes(first, uuid.uuid4(), 1) == [True]  # another tenant has its own budget


async def test_a_search_counts_in_its_scope_and_the_account_limit(redis: Redis) -> None:  # type: ignore[type-arg]
    budget, tenant = ProviderBudget(redis, tool_reserve=0.0), uuid.uuid4()
    assert await _takes(budget, tenant, 4, scope="search") == [True, True, True, False]
    assert await _takes(budget, tenant, 8) == [True] * 7 + [False]  # 3 searches already in the 10


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "local"])
async def test_a_search_refused_by_the_account_limit_takes_no_search_slot(
        redis: Redis, shared: bool) -> None:  # type: ignore[type-arg]
    budget = ProviderBudget(redis if shared else None, tool_reserve=0.0, fallback_share=1.0)
    tenant = uuid.uuid4()
    assert await _takes(budget, tenant, 10) == [True] * 10  # the account-wide 10 spent on other calls
    refused = await budget.take(tenant, "acme", LIMITS, "search", "tool")
    assert not refused.allowed and 0 < refused.wait <= 60
    assert await _takes(budget, tenant, 5, scope="search") == [False] * 5  # each refused, none counted
    roomier = (RateLimit(100, 60.0), RateLimit(3, 60.0, scope="search"))  # the same windows, room account-wide
    searches = [(await budget.take(tenant, "acme", roomier, "search", "tool")).allowed for _ in range(4)]
    assert searches == [True, True, True, False]  # all three search slots were still free


async def test_the_providers_stop_signal_holds_everyone_off(redis: Redis) -> None:  # type: ignore[type-arg]
    budget, other, tenant = ProviderBudget(redis), ProviderBudget(redis), uuid.uuid4()
    await budget.hold_off(tenant, "acme", 5.0)
    held = await other.take(tenant, "acme", LIMITS, "all", "tool")
    assert not held.allowed and 4.0 < held.wait <= 5.0


async def test_redis_away_falls_back_to_a_conservative_local_budget() -> None:
    down: Redis = Redis.from_url(f"redis://127.0.0.1:{closed_port()}/0",  # type: ignore[type-arg]
                                 socket_connect_timeout=0.2)
    budget, tenant = ProviderBudget(down, fallback_share=0.25), uuid.uuid4()
    try:
        taken = await _takes(budget, tenant, 4)
    finally:
        await down.aclose()
    assert taken == [True, True, False, False]  # floor(10 x 0.9 x 0.25) = 2: bounded, never unlimited
    assert budget.counters["redis_errors"] == 1  # then the local budget until the fallback period ends


async def test_budgeted_mirror_calls_at_three_times_the_limit_never_meet_a_429(
        redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[type-arg]
    # HubSpot's 100 calls, over a window no slow machine can outlast during the burst (its real one is 10 s), so
    # the count below is exact: the budget and the sandbox enforce the same declared limit.
    monkeypatch.setattr(HubSpotDriver, "rate_limits", (RateLimit(100, 600.0), RateLimit(5, 600.0, scope="search")))
    app = hubspot_sandbox.create_app()
    state: hubspot_sandbox.HubSpotState = app.state.sandbox
    state.knobs.interval_limit, state.knobs.interval_seconds = 100, 600.0
    budget, tenant = ProviderBudget(redis), uuid.uuid4()
    token = state.tokens.credentials().access_token

    def driver(priority: str) -> HubSpotDriver:
        client = httpx.AsyncClient(base_url="https://api.hubapi.com", transport=httpx.ASGITransport(app=app),
                                   headers={"Authorization": f"Bearer {token}"})
        attach(client, budget, tenant, HubSpotDriver, priority)  # type: ignore[arg-type]
        return HubSpotDriver(client)

    mirror = driver("mirror")
    outcomes = await asyncio.gather(*(mirror.create_record(CrmObject.DEAL, {"dealname": f"d{i}"}, f"k{i}")
                                      for i in range(300)), return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, errors.RateLimitedError)]
    assert all(r.provider_code == "BUDGET" and r.retry_after is not None for r in refused)
    assert state.calls_in_window <= 100 and not [o for o in outcomes if isinstance(o, errors.DriverError)
                                                   and o.provider_code != "BUDGET"]
    assert refused and sum(state.calls.values()) == 90  # the mirror stopped at 90 of the window's 100 calls
    lookups = [await driver("tool").lookup_customer(email=f"tool{i}@example.com") for i in range(5)]
    assert lookups == [None] * 5  # the agent's lookups still got through (searches, in the reserve)
    await mirror.client.aclose()


async def test_a_tool_call_waits_for_its_slot_where_a_mirror_call_is_refused(
        redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[type-arg]
    # One search a second: the second search in a row finds its scope spent for up to a second.
    monkeypatch.setattr(HubSpotDriver, "rate_limits", (RateLimit(100, 600.0), RateLimit(1, 1.0, scope="search")))
    app = hubspot_sandbox.create_app()
    app.state.sandbox.instant_search()
    token = app.state.sandbox.tokens.credentials().access_token
    budget = ProviderBudget(redis, tool_wait=5.0)

    def driver(priority: str, tenant: uuid.UUID) -> HubSpotDriver:
        client = httpx.AsyncClient(base_url="https://api.hubapi.com", transport=httpx.ASGITransport(app=app),
                                   headers={"Authorization": f"Bearer {token}"})
        attach(client, budget, tenant, HubSpotDriver, priority)  # type: ignore[arg-type]
        return HubSpotDriver(client)

    tool = driver("tool", uuid.uuid4())
    assert [await tool.search_records(CrmObject.CUSTOMER, "x") for _ in range(3)] == [[], [], []]  # waited, answered
    mirror = driver("mirror", uuid.uuid4())
    await mirror.search_records(CrmObject.CUSTOMER, "x")
    with pytest.raises(errors.RateLimitedError) as refused:
        await mirror.search_records(CrmObject.CUSTOMER, "x")
    assert refused.value.provider_code == "BUDGET"
    await tool.client.aclose()
    await mirror.client.aclose()


async def test_a_background_call_waits_out_a_per_second_window_but_not_a_long_one(
        redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[type-arg]
    """An erasure's discovery needs more searches than one second's search window allows: refusing the extra
    ones at once failed every attempt alike. A short wait lets them through; a spent long window still refuses."""
    monkeypatch.setattr(HubSpotDriver, "rate_limits", (RateLimit(4, 600.0), RateLimit(1, 1.0, scope="search")))
    app = hubspot_sandbox.create_app()
    app.state.sandbox.instant_search()
    token = app.state.sandbox.tokens.credentials().access_token
    client = httpx.AsyncClient(base_url="https://api.hubapi.com", transport=httpx.ASGITransport(app=app),
                               headers={"Authorization": f"Bearer {token}"})
    attach(client, ProviderBudget(redis, background_wait=2.0), uuid.uuid4(), HubSpotDriver, "mirror")
    mirror = HubSpotDriver(client)
    assert [await mirror.search_records(CrmObject.CUSTOMER, "x") for _ in range(3)] == [[], [], []]
    with pytest.raises(errors.RateLimitedError) as refused:  # 3 of the mirror's floor(4 × 0.9) = 3 are spent
        await mirror.search_records(CrmObject.CUSTOMER, "x")
    assert refused.value.provider_code == "BUDGET" and refused.value.retry_after is not None
    assert refused.value.retry_after.total_seconds() > 2.0  # a long wait: the workflow's durable timer, not ours
    await client.aclose()
