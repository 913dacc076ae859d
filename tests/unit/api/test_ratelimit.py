"""The limiter on a real Redis: moving window, refusal details, fail-open and the circuit breaker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from api.ratelimit import CircuitBreaker, RateLimiter
from settings import RateLimitSettings
from tests.support.network import SilentServer, closed_port, silent_server


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest_asyncio.fixture(loop_scope="session")
async def hanging_redis() -> AsyncIterator[SilentServer]:
    async with silent_server() as server:
        yield server


def test_breaker_opens_after_consecutive_failures_and_probes_once_after_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, cooldown=5.0, clock=clock)
    assert [breaker.record_failure() for _ in range(3)] == [False, False, True]
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 5.0
    assert breaker.state == "half-open"
    assert breaker.allow() and not breaker.allow()  # one probe at a time
    assert breaker.record_failure() is True and breaker.state == "open"  # failed probe reopens
    clock.now += 5.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()


async def test_moving_window_refuses_with_retry_after(redis_url: str) -> None:
    limiter = RateLimiter(RateLimitSettings(per_api_key="5/minute", redis_timeout_seconds=2.0), redis_url)
    key = str(uuid.uuid4())
    try:
        decisions = [await limiter.hit("per_api_key", key) for _ in range(7)]
    finally:
        await limiter.aclose()
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    refused = decisions[-1]
    assert refused.retry_after is not None and 1 <= refused.retry_after <= 60
    assert refused.headers()["Retry-After"] == str(refused.retry_after)
    assert refused.headers()["RateLimit-Remaining"] == "0" and refused.headers()["RateLimit-Limit"] == "5"
    assert limiter.counters["allowed"] == 5 and limiter.counters["denied"] == 2


async def test_keys_are_independent(redis_url: str) -> None:
    limiter = RateLimiter(RateLimitSettings(per_tenant_tool="2/minute", redis_timeout_seconds=2.0), redis_url)
    tenant = str(uuid.uuid4())
    try:
        lookups = [(await limiter.hit("per_tenant_tool", tenant, "crm_lookup_customer")).allowed for _ in range(3)]
        creates = [(await limiter.hit("per_tenant_tool", tenant, "crm_create_record")).allowed for _ in range(2)]
    finally:
        await limiter.aclose()
    assert lookups == [True, True, False] and creates == [True, True]


@pytest.mark.parametrize("down", ["stopped", "hanging"])
async def test_fails_open_and_the_breaker_stops_paying_for_a_dead_redis(
        down: str, hanging_redis: SilentServer) -> None:
    port = closed_port() if down == "stopped" else hanging_redis.port
    url = f"redis://127.0.0.1:{port}/0"
    clock = Clock()
    # A refused connection fails at once; a generous timeout there keeps a loaded machine from turning a
    # slow refusal into a timeout (counted under another name). Only the silent server needs a short one.
    timeout = 5.0 if down == "stopped" else 0.2
    config = RateLimitSettings(per_api_key="2/minute", redis_timeout_seconds=timeout, breaker_failures=3,
                               breaker_cooldown_seconds=30)
    limiter = RateLimiter(config, url, clock=clock)
    try:
        decisions = [await limiter.hit("per_api_key", "k") for _ in range(20)]
        assert all(d.allowed and d.degraded for d in decisions)  # far past the limit of 2: fail open
        failures = "redis_errors" if down == "stopped" else "redis_timeouts"
        assert limiter.counters[failures] == 3 and limiter.counters["skipped"] == 17
        assert limiter.counters["breaker_opened"] == 1 and limiter.breaker.state == "open"
        if down == "hanging":
            assert hanging_redis.accepted == 3  # one connection per failed attempt, none while open
        clock.now += 30
        await limiter.hit("per_api_key", "k")  # the half-open probe fails: open again, no more attempts
        await limiter.hit("per_api_key", "k")
        assert limiter.counters[failures] == 4 and limiter.counters["breaker_opened"] == 2
    finally:
        await limiter.aclose()


async def test_breaker_closes_when_redis_answers_again(redis_url: str) -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimitSettings(redis_timeout_seconds=2.0), redis_url, clock=clock)
    try:
        for _ in range(limiter.breaker.failures):
            limiter.breaker.record_failure()
        assert (await limiter.hit("per_api_key", "k")).degraded
        clock.now += limiter.breaker.cooldown
        probe = await limiter.hit("per_api_key", str(uuid.uuid4()))
        assert probe.allowed and not probe.degraded and limiter.breaker.state == "closed"
    finally:
        await limiter.aclose()


async def test_disabled_limits_never_touch_redis() -> None:
    limiter = RateLimiter(RateLimitSettings(enabled=False, per_api_key="1/minute"),
                          f"redis://127.0.0.1:{closed_port()}/0")
    try:
        assert all([(await limiter.hit("per_api_key", "k")).allowed for _ in range(5)])
        assert sum(limiter.counters.values()) == 0
    finally:
        await limiter.aclose()
