"""Request rate limits shared by every API process through Redis, failing open when Redis is in trouble.

Two rules (values in `settings.rate_limits`): `per_api_key` for the public /v1 API and `per_tenant_tool`
for the agent's tool routes. Both use the `limits` library's moving window (a Redis list of hit timestamps
behind one Lua script): unlike a fixed window it never admits 2x the limit around a window edge, and a hit
is one Redis round trip. Only a refused hit pays a second trip, to tell the caller when to come back.

Redis is a helper here, not a dependency: a Redis error or a call slower than `redis_timeout_seconds` lets
the request through (logged and counted), and after `breaker_failures` failures in a row a circuit breaker
skips Redis entirely for `breaker_cooldown_seconds`, then lets one probe through to see if it is back.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.requests import Request

import telemetry
from api.context import context_of
from api.errors import Problem
from settings import RateLimitSettings

log = logging.getLogger(__name__)

RULES = ("per_api_key", "per_tenant_tool")


@dataclass(frozen=True)
class Decision:
    """The outcome of one hit. `degraded` means Redis was not consulted or failed, so the hit was let through."""

    allowed: bool
    limit: int
    window_seconds: int
    retry_after: int | None = None
    degraded: bool = False

    def headers(self) -> dict[str, str]:
        """RateLimit headers (IETF httpapi draft) plus Retry-After on a refusal."""
        headers = {"RateLimit-Policy": f"{self.limit};w={self.window_seconds}"}
        if not self.allowed and self.retry_after is not None:
            headers |= {"Retry-After": str(self.retry_after), "RateLimit-Limit": str(self.limit),
                        "RateLimit-Remaining": "0", "RateLimit-Reset": str(self.retry_after)}
        return headers


class CircuitBreaker:
    """Closed → open after `failures` consecutive failures → half-open after `cooldown` (one probe at a time)."""

    def __init__(self, failures: int, cooldown: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures, self.cooldown, self.clock = failures, cooldown, clock
        self.consecutive = 0
        self.opened_at: float | None = None
        self.probing = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.clock() - self.opened_at >= self.cooldown else "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half-open" and not self.probing:
            self.probing = True
            return True
        return False

    def record_success(self) -> None:
        if self.opened_at is not None:
            log.warning("rate limiter: Redis answers again, closing the circuit breaker")
        self.consecutive, self.opened_at, self.probing = 0, None, False

    def record_failure(self) -> bool:
        """Count a failure; True when it (re)opened the breaker."""
        self.consecutive += 1
        reopened = self.probing or (self.opened_at is None and self.consecutive >= self.failures)
        if reopened:
            self.opened_at = self.clock()
        self.probing = False
        return reopened


class RateLimiter:
    """Moving-window limits over Redis for every API process, failing open.

    `counters` holds allowed, denied, redis_errors, redis_timeouts, skipped (breaker open) and
    breaker_opened, so tests and operators can see how often the limiter degraded.
    """

    def __init__(self, config: RateLimitSettings, redis_url: str, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.items: dict[str, RateLimitItem] = {rule: parse(getattr(config, rule)) for rule in RULES}
        self.timeout = config.redis_timeout_seconds
        # Our own pool, so the limiter can close its connections, and with the client's own retries off:
        # they would multiply the timeout, and the breaker decides what a failing Redis costs instead.
        self.pool: ConnectionPool[Any] = ConnectionPool.from_url(
            redis_url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout, retry=Retry(NoBackoff(), 0))
        options: Any = {"connection_pool": self.pool}
        self.storage = RedisStorage(f"async+{redis_url}", implementation="redispy", key_prefix="crm-sor-rl",
                                    **options)
        self.strategy = MovingWindowRateLimiter(self.storage)
        self.breaker = CircuitBreaker(config.breaker_failures, config.breaker_cooldown_seconds, clock)
        self.counters: Counter[str] = Counter()

    async def hit(self, rule: str, *identifiers: str) -> Decision:
        """Count one request against `rule` for `identifiers` (e.g. the key id, or tenant and tool)."""
        item = self.items[rule]
        limit, window = item.amount, item.get_expiry()
        if not self.config.enabled:
            return Decision(allowed=True, limit=limit, window_seconds=window)
        if not self.breaker.allow():
            self.counters["skipped"] += 1
            telemetry.RATE_LIMIT.labels(rule, "fail_open_breaker").inc()
            return Decision(allowed=True, limit=limit, window_seconds=window, degraded=True)
        try:
            async with asyncio.timeout(self.timeout):
                allowed = await self.strategy.hit(item, rule, *identifiers)
        except Exception as exc:  # any Redis trouble must not fail the request: fail open
            self._failed(rule, exc)
            return Decision(allowed=True, limit=limit, window_seconds=window, degraded=True)
        self.breaker.record_success()
        if allowed:
            self.counters["allowed"] += 1
            telemetry.RATE_LIMIT.labels(rule, "allowed").inc()
            return Decision(allowed=True, limit=limit, window_seconds=window)
        self.counters["denied"] += 1
        telemetry.RATE_LIMIT.labels(rule, "denied").inc()
        return Decision(allowed=False, limit=limit, window_seconds=window,
                        retry_after=await self._retry_after(item, rule, *identifiers))

    async def _retry_after(self, item: RateLimitItem, *identifiers: str) -> int:
        window = item.get_expiry()
        try:
            async with asyncio.timeout(self.timeout):
                stats = await self.strategy.get_window_stats(item, *identifiers)
        except Exception:  # the refusal stands; the caller gets the whole window as a safe upper bound
            return window
        return min(window, max(1, math.ceil(stats.reset_time - time.time())))

    def _failed(self, rule: str, exc: Exception) -> None:
        kind = "redis_timeouts" if isinstance(exc, TimeoutError) else "redis_errors"
        self.counters[kind] += 1
        telemetry.RATE_LIMIT.labels(rule, "fail_open_timeout" if kind == "redis_timeouts" else "fail_open_error").inc()
        opened = self.breaker.record_failure()
        # The exception type only: a Redis error message can carry the connection URL.
        log.warning("rate limiter: Redis %s on %s (%s); letting the request through",
                    "timeout" if kind == "redis_timeouts" else "error", rule, type(exc).__name__)
        if opened:
            self.counters["breaker_opened"] += 1
            log.error("rate limiter: circuit breaker open for %.1fs after %d Redis failures; limits are off",
                      self.breaker.cooldown, self.breaker.consecutive)

    async def aclose(self) -> None:
        await self.pool.disconnect()


def limiter_of(request: Request) -> RateLimiter:
    """The process-wide limiter, built on first use and kept in `AppContext.extras["ratelimiter"]`."""
    ctx = context_of(request)
    limiter = ctx.extras.get("ratelimiter")
    if limiter is None:
        limiter = ctx.extras["ratelimiter"] = RateLimiter(ctx.settings.rate_limits, ctx.settings.redis_url)
    assert isinstance(limiter, RateLimiter)
    return limiter


async def enforce(request: Request, rule: str, *identifiers: str, **problem_extra: object) -> Decision:
    """Hit `rule`; a refusal is a 429 problem with Retry-After and RateLimit headers."""
    decision = await limiter_of(request).hit(rule, *identifiers)
    if not decision.allowed:
        raise Problem(429, "rate-limited", "Too many requests.",
                      f"The limit is {decision.limit} requests per {decision.window_seconds}s; "
                      f"retry after {decision.retry_after}s.",
                      headers=decision.headers(), retry_after=decision.retry_after, **problem_extra)
    return decision
