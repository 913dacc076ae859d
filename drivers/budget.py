"""Provider rate budgets: stay under each CRM's documented limits *before* it answers 429.

One budget per (tenant, provider, scope), shared by every worker and API process through Redis. Each driver
declares its limits (`BaseDriver.rate_limits`: e.g. HubSpot 100 requests / 10 s, and 5 / s for search); a call
counts against the account-wide limit and against its own scope's. Two priorities share one window:
- `tool`: the agent's synchronous calls (a caller is on the line) may use the whole limit;
- `mirror`: background writes stop at `1 - tool_reserve` of it, so tools always find headroom.
`attach()` puts a budget on a driver's client (httpx event hooks). A background call (mirror, erasure) may wait
in-process for a slot up to `background_wait` seconds — a per-second window (HubSpot's search limit) frees within
one, and an activity that needs more calls than one such window allows must not fail on every attempt — past that
it raises `RateLimitedError(retry_after=…)`, and the mirror waits on a durable timer (no busy loop, no retry
storm). A tool call may wait for its slot up to `tool_wait`
seconds (a caller is on the line: a search slot frees within a second, and the tool's own deadline bounds the
wait); past that it raises too, which a tool route turns into `crm_rate_limited` for the agent.

The provider's own signals correct the budget: a 429 with Retry-After, or a driver's header saying the window
is spent (`BaseDriver.rate_limit_pause`), holds the whole (tenant, provider) budget off for that long.

Redis is shared state, not a dependency: when it fails, the process falls back for a while to an in-process
window at `fallback_share` of each limit (several processes may do the same, so it is conservative) — never to
an unbounded budget.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, Protocol

import httpx
from redis.asyncio import BlockingConnectionPool, Redis

from drivers.base import BaseDriver
from drivers.errors import RateLimitedError
from drivers.provider import RateLimit

log = logging.getLogger(__name__)

Priority = Literal["tool", "mirror"]

# One call against all its windows at once: KEYS[1] the hold-off key, KEYS[2..] the windows (sorted sets of call
# ids by time); ARGV[1] the call id, then each window's limit and seconds. All or nothing: a call refused by one
# window takes no slot from another. Redis's own clock, so processes on hosts with skewed clocks share one timeline.
# Answers {1, 0} when taken, else {0, milliseconds until every window has room}.
_TAKE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local held = tonumber(redis.call('GET', KEYS[1]) or '0')
if held > now_ms then return {0, held - now_ms} end
local wait = 0
for i = 2, #KEYS do
  local limit = tonumber(ARGV[2 * i - 2])
  local window_ms = math.floor(tonumber(ARGV[2 * i - 1]) * 1000)
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now_ms - window_ms)
  local count = redis.call('ZCARD', KEYS[i])
  if count >= limit then
    local oldest = redis.call('ZRANGE', KEYS[i], count - limit, count - limit, 'WITHSCORES')
    wait = math.max(wait, tonumber(oldest[2]) + window_ms - now_ms, 1)
  end
end
if wait > 0 then return {0, wait} end
for i = 2, #KEYS do
  redis.call('ZADD', KEYS[i], now_ms, ARGV[1])
  redis.call('PEXPIRE', KEYS[i], math.floor(tonumber(ARGV[2 * i - 1]) * 1000))
end
return {1, 0}
"""
_HOLD = """
local now = redis.call('TIME')
local until_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[1])
local held = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > held then redis.call('SET', KEYS[1], until_ms, 'PX', tonumber(ARGV[1])) end
return 1
"""


@dataclass(frozen=True)
class Grant:
    """The answer to one call: allowed, or the seconds until a slot frees. `degraded`: Redis was not used."""

    allowed: bool
    wait: float = 0.0
    degraded: bool = False


@dataclass(frozen=True)
class Window:
    """One sliding window a call counts against: its key, how many calls it allows, and over how many seconds."""

    key: str
    limit: int
    seconds: float


class _Store(Protocol):
    async def take(self, windows: Sequence[Window], hold_key: str) -> tuple[bool, float]: ...

    async def hold(self, hold_key: str, seconds: float) -> None: ...


class RedisStore:
    """The shared windows: one Lua round trip per call, whatever the number of its windows."""

    def __init__(self, redis: Redis) -> None:  # type: ignore[type-arg]
        self._redis = redis
        self._take = redis.register_script(_TAKE)
        self._hold = redis.register_script(_HOLD)

    async def take(self, windows: Sequence[Window], hold_key: str) -> tuple[bool, float]:
        args: list[Any] = [uuid.uuid4().hex]
        for window in windows:
            args += [window.limit, window.seconds]
        taken, wait_ms = await self._take(keys=[hold_key, *(window.key for window in windows)], args=args)
        return bool(taken), int(wait_ms) / 1000

    async def hold(self, hold_key: str, seconds: float) -> None:
        await self._hold(keys=[hold_key], args=[max(1, math.ceil(seconds * 1000))])

    async def aclose(self) -> None:
        await self._redis.connection_pool.disconnect()


class LocalStore:
    """The same windows in this process only: the fallback while Redis is away, and the store of tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, deque[float]] = {}
        self._held: dict[str, float] = {}

    async def take(self, windows: Sequence[Window], hold_key: str) -> tuple[bool, float]:
        now = self._clock()
        held = self._held.get(hold_key, 0.0)
        if held > now:
            return False, held - now
        wait = 0.0
        for window in windows:
            calls = self._windows.setdefault(window.key, deque())
            while calls and calls[0] <= now - window.seconds:
                calls.popleft()
            if len(calls) >= window.limit:
                wait = max(wait, 0.001, calls[len(calls) - window.limit] + window.seconds - now)
        if wait > 0:
            return False, wait
        for window in windows:
            self._windows[window.key].append(now)
        return True, 0.0

    async def hold(self, hold_key: str, seconds: float) -> None:
        self._held[hold_key] = max(self._held.get(hold_key, 0.0), self._clock() + seconds)


class ProviderBudget:
    """Budgets for every (tenant, provider, scope), in Redis when it answers, else in this process."""

    def __init__(self, redis: Redis | None, *, tool_reserve: float = 0.1,  # type: ignore[type-arg]
                 fallback_share: float = 0.25, fallback_seconds: float = 30.0, tool_wait: float = 0.0,
                 background_wait: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._shared: _Store | None = RedisStore(redis) if redis is not None else None
        self._local = LocalStore(clock)
        self.tool_reserve, self.fallback_share, self._fallback_seconds = tool_reserve, fallback_share, fallback_seconds
        self.tool_wait = tool_wait  # seconds a tool call may wait for a slot before it is refused
        self.background_wait = background_wait  # the same for mirror and erasure calls
        self._clock = clock
        self._local_until = 0.0
        self.counters: dict[str, int] = {"taken": 0, "refused": 0, "held_off": 0, "redis_errors": 0}

    @classmethod
    def from_url(cls, redis_url: str, **options: Any) -> ProviderBudget:
        """A budget on its own pool: a burst of callers waits briefly for a connection instead of failing over."""
        pool: BlockingConnectionPool[Any] = BlockingConnectionPool.from_url(
            redis_url, max_connections=32, timeout=0.5, socket_timeout=0.2, socket_connect_timeout=0.2)
        return cls(Redis(connection_pool=pool), **options)

    async def aclose(self) -> None:
        if isinstance(self._shared, RedisStore):
            await self._shared.aclose()

    async def take(self, tenant: uuid.UUID, provider: str, limits: Sequence[RateLimit], scope: str,
                   priority: Priority) -> Grant:
        """Count one call against its scope's limit and the account-wide one, in one step: a call refused by one
        takes no slot from the other."""
        store, degraded = self._store()
        windows = [Window(f"crm-sor-budget:{{{tenant}:{provider}}}:{limit.scope}:{limit.per_seconds:g}",
                          self._allowance(limit, priority, degraded), limit.per_seconds)
                   for limit in limits if limit.scope in ("all", scope)]
        try:
            taken, wait = await store.take(windows, self._hold_key(tenant, provider))
        except Exception as exc:  # Redis trouble: a conservative local budget for a while
            self._redis_failed(exc)
            return await self.take(tenant, provider, limits, scope, priority)
        if not taken:
            self.counters["refused"] += 1
            return Grant(False, wait, degraded)
        self.counters["taken"] += 1
        return Grant(True, 0.0, degraded)

    async def hold_off(self, tenant: uuid.UUID, provider: str, seconds: float) -> None:
        """The provider said stop (429, or its headers say the window is spent): nobody calls it for a while."""
        self.counters["held_off"] += 1
        store, _ = self._store()
        try:
            await store.hold(self._hold_key(tenant, provider), seconds)
        except Exception as exc:
            self._redis_failed(exc)
            await self._local.hold(self._hold_key(tenant, provider), seconds)

    def _allowance(self, limit: RateLimit, priority: Priority, degraded: bool) -> int:
        share = 1.0 if priority == "tool" else 1.0 - self.tool_reserve
        if degraded:
            share *= self.fallback_share
        return max(1, math.floor(limit.requests * share))

    def _store(self) -> tuple[_Store, bool]:
        if self._shared is None or self._clock() < self._local_until:
            return self._local, True
        return self._shared, False

    def _redis_failed(self, exc: Exception) -> None:
        self.counters["redis_errors"] += 1
        self._local_until = self._clock() + self._fallback_seconds
        log.warning("provider budget: Redis failed (%s); a local budget at %.0f%% for %.0f s",
                    type(exc).__name__, self.fallback_share * 100, self._fallback_seconds)

    @staticmethod
    def _hold_key(tenant: uuid.UUID, provider: str) -> str:
        return f"crm-sor-budget:{{{tenant}:{provider}}}:held"  # {…}: one Redis Cluster slot for a call's keys


def attach(client: httpx.AsyncClient, budget: ProviderBudget, tenant: uuid.UUID, driver: type[BaseDriver],
           priority: Priority) -> None:
    """Make every request of a driver's client take from the tenant's budget first (a refused one raises
    `RateLimitedError` without reaching the provider), and let each answer correct the budget."""
    slug = driver.slug

    async def take(request: httpx.Request) -> None:
        if not driver.rate_limits:
            return
        scope = driver.budget_scope(request)
        grant = await budget.take(tenant, slug, driver.rate_limits, scope, priority)
        waited, patience = 0.0, budget.tool_wait if priority == "tool" else budget.background_wait
        while not grant.allowed and waited + grant.wait <= patience:
            await asyncio.sleep(grant.wait)  # a tool's deadline cancels this wait if it comes first
            waited += grant.wait
            grant = await budget.take(tenant, slug, driver.rate_limits, scope, priority)
        if not grant.allowed:
            raise RateLimitedError(f"{priority} budget spent for now", provider=slug,
                                   retry_after=timedelta(seconds=grant.wait), provider_code="BUDGET")

    async def correct(response: httpx.Response) -> None:
        pause = driver.rate_limit_pause(response)
        if pause:
            await budget.hold_off(tenant, slug, pause)

    client.event_hooks["request"].append(take)
    client.event_hooks["response"].append(correct)
