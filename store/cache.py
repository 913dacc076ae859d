"""`TtlCache`: a small per-process cache of configuration rows for the agent's hot path.

A voice lookup used to read the tenant row, decrypt the credential (and write its audit row) and load the field
mapping on every call: three sessions and an insert before the CRM is even asked. These change rarely, so each
process keeps them for a few seconds:
- entries live `ttl` seconds: a change made by *another* process (the CLI, another API replica) is seen within
  that; a change made by *this* process invalidates at once (the writer calls `invalidate` after it commits);
- at most `max_entries`: past that the oldest entries go (random tenant ids cannot grow memory without bound);
- a load that started before an invalidation is not stored (it may have read the old row): every invalidation
  bumps a generation, and a load stores its answer only if no invalidation happened meanwhile;
- an entry read in the second half of its life is reloaded in the background (refresh-ahead) while the reader gets
  the copy: a tenant that calls steadily never waits for a reload (a decrypt, its audit row, a mapping read), and a
  copy is still never older than `ttl`; a failed refresh is logged and the copy serves until it expires;
- `ttl=0` turns the cache off (every read loads).
Keys are tuples whose first element is the tenant id, so `invalidate(tenant_id)` drops everything of a tenant.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

V = TypeVar("V")

# How long a process trusts its copy of a tenant's row, credential and field mapping: a disable, a reconnect or a
# mapping change made elsewhere takes effect within this; one made by this process, at once.
CONFIG_TTL_SECONDS = 5.0


class TtlCache(Generic[V]):
    """Values keyed by `(tenant_id, …)`, each kept `ttl` seconds, at most `max_entries` of them.

    Attributes:
        hits, loads: counters (tests and the bench read them); `loads` counts background refreshes too.
    """

    def __init__(self, ttl: float, *, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.max_entries, self._clock = ttl, max_entries, clock
        self._entries: OrderedDict[tuple[Hashable, ...], tuple[float, V]] = OrderedDict()
        self._refreshing: dict[tuple[Hashable, ...], asyncio.Task[None]] = {}
        self._generation = 0
        self.hits = self.loads = 0

    async def get(self, key: tuple[Hashable, ...], load: Callable[[], Awaitable[V]]) -> V:
        """The cached value for `key`, else `load()`'s (kept unless the cache was invalidated meanwhile).

        A copy past half its life is answered as it is, and `load()` runs in the background to replace it.
        """
        entry = self._entries.get(key)
        now = self._clock()
        if entry is not None and now < entry[0]:
            self.hits += 1
            if now >= entry[0] - self.ttl / 2 and key not in self._refreshing:
                self._refreshing[key] = asyncio.ensure_future(self._refresh(key, load))
            return entry[1]
        return await self._load(key, load)

    async def _load(self, key: tuple[Hashable, ...], load: Callable[[], Awaitable[V]]) -> V:
        generation = self._generation
        value = await load()
        self.loads += 1
        if self.ttl > 0 and generation == self._generation:
            self._entries[key] = (self._clock() + self.ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    async def _refresh(self, key: tuple[Hashable, ...], load: Callable[[], Awaitable[V]]) -> None:
        try:
            await self._load(key, load)
        except Exception as exc:  # the copy serves until it expires; then a reader's own load raises to it
            log.warning("background refresh of a cached entry failed (%s)", type(exc).__name__)
        finally:
            self._refreshing.pop(key, None)

    async def settle(self) -> None:
        """Wait for the background refreshes under way (tests)."""
        while self._refreshing:
            await asyncio.gather(*list(self._refreshing.values()), return_exceptions=True)

    def invalidate(self, tenant_id: uuid.UUID | None = None) -> None:
        """Forget a tenant's entries (every entry when None), and keep loads already running from storing."""
        self._generation += 1
        if tenant_id is None:
            self._entries.clear()
            return
        for key in [key for key in self._entries if key[0] == tenant_id]:
            del self._entries[key]
