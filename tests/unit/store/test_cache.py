"""`TtlCache` (store/cache.py): time-to-live, refresh-ahead, bound, per-tenant invalidation, and no stale store after
one."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from store.cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_value_is_kept_for_its_ttl_then_loaded_again() -> None:
    clock = Clock()
    cache: TtlCache[str] = TtlCache(5.0, clock=clock)
    rows = iter(["first", "second"])

    async def load() -> str:
        return next(rows)

    tenant = uuid.uuid4()
    assert await cache.get((tenant,), load) == "first"
    clock.now += 2.4  # in the first half of its life: a plain hit
    assert await cache.get((tenant,), load) == "first"
    clock.now += 2.7  # expired, never read in its second half: the reader waits for the load
    assert await cache.get((tenant,), load) == "second"
    assert (cache.hits, cache.loads) == (1, 2)


async def test_a_copy_read_in_its_second_half_is_refreshed_in_the_background() -> None:
    clock = Clock()
    cache: TtlCache[str] = TtlCache(5.0, clock=clock)
    rows = iter(["first", "second"])
    loading = asyncio.Event()

    async def load() -> str:
        loading.set()
        return next(rows)

    tenant = uuid.uuid4()
    assert await cache.get((tenant,), load) == "first"
    loading.clear()
    clock.now += 3.0
    assert await cache.get((tenant,), load) == "first"  # answered from the copy, not after the reload
    assert await cache.get((tenant,), load) == "first"  # one refresh at a time
    await cache.settle()
    assert loading.is_set() and cache.loads == 2
    clock.now += 4.0  # past the first copy's life, within the refreshed one's
    assert await cache.get((tenant,), load) == "second"
    assert cache.loads == 2  # no reader waited for a load after the first


async def test_a_failed_refresh_keeps_the_copy_until_it_expires() -> None:
    clock = Clock()
    cache: TtlCache[str] = TtlCache(5.0, clock=clock)
    tenant = uuid.uuid4()
    await cache.get((tenant,), lambda: asyncio.sleep(0, "first"))

    async def unavailable() -> str:
        raise ConnectionError("database away")

    clock.now += 3.0
    assert await cache.get((tenant,), unavailable) == "first"
    await cache.settle()
    assert await cache.get((tenant,), unavailable) == "first"
    await cache.settle()
    clock.now += 2.0
    with pytest.raises(ConnectionError):  # expired: the reader's own load, and its error
        await cache.get((tenant,), unavailable)


async def test_a_refresh_that_spans_an_invalidation_is_not_kept() -> None:
    clock = Clock()
    cache: TtlCache[str] = TtlCache(5.0, clock=clock)
    tenant = uuid.uuid4()
    await cache.get((tenant,), lambda: asyncio.sleep(0, "first"))
    reading, release = asyncio.Event(), asyncio.Event()

    async def slow_old_row() -> str:
        reading.set()
        await release.wait()
        return "old"

    clock.now += 3.0
    assert await cache.get((tenant,), slow_old_row) == "first"
    await reading.wait()
    cache.invalidate(tenant)  # a writer here commits while the refresh reads
    release.set()
    await cache.settle()
    assert await cache.get((tenant,), lambda: asyncio.sleep(0, "new")) == "new"


async def test_invalidating_a_tenant_drops_its_entries_only() -> None:
    cache: TtlCache[str] = TtlCache(5.0, clock=Clock())
    mine, other = uuid.uuid4(), uuid.uuid4()
    for key in ((mine, "hubspot"), (mine, "zoho"), (other, "hubspot")):
        await cache.get(key, lambda key=key: asyncio.sleep(0, f"old {key[1]}"))
    cache.invalidate(mine)
    assert await cache.get((mine, "hubspot"), lambda: asyncio.sleep(0, "new")) == "new"
    assert await cache.get((mine, "zoho"), lambda: asyncio.sleep(0, "new")) == "new"
    assert await cache.get((other, "hubspot"), lambda: asyncio.sleep(0, "new")) == "old hubspot"
    cache.invalidate()
    assert await cache.get((other, "hubspot"), lambda: asyncio.sleep(0, "newest")) == "newest"


async def test_a_load_that_spans_an_invalidation_is_answered_but_not_kept() -> None:
    cache: TtlCache[str] = TtlCache(5.0, clock=Clock())
    tenant = uuid.uuid4()
    reading, release = asyncio.Event(), asyncio.Event()

    async def slow_old_row() -> str:  # read before the writer committed
        reading.set()
        await release.wait()
        return "old"

    pending = asyncio.create_task(cache.get((tenant,), slow_old_row))
    await reading.wait()
    cache.invalidate(tenant)  # the writer commits meanwhile
    release.set()
    assert await pending == "old"
    assert await cache.get((tenant,), lambda: asyncio.sleep(0, "new")) == "new"


async def test_the_cache_is_bounded_and_ttl_zero_keeps_nothing() -> None:
    cache: TtlCache[int] = TtlCache(5.0, max_entries=3, clock=Clock())
    tenants = [uuid.uuid4() for _ in range(4)]
    for n, tenant in enumerate(tenants):
        await cache.get((tenant,), lambda n=n: asyncio.sleep(0, n))
    assert await cache.get((tenants[0],), lambda: asyncio.sleep(0, -1)) == -1  # the oldest went
    assert await cache.get((tenants[3],), lambda: asyncio.sleep(0, -1)) == 3
    off: TtlCache[int] = TtlCache(0.0, clock=Clock())
    tenant = uuid.uuid4()
    await off.get((tenant,), lambda: asyncio.sleep(0, 1))
    assert await off.get((tenant,), lambda: asyncio.sleep(0, 2)) == 2 and off.hits == 0
