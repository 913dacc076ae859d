"""What one mirror pass did, table by table, and whether it must stop (an account-wide failure)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from drivers.errors import DriverError

T = TypeVar("T")
R = TypeVar("R")
# CRM calls of one pass in flight at once: the mirror waits on the network, not on CPU. The provider budget
# paces them (drivers/budget.py); the database pool must hold this many sessions (default 5 + 10 overflow).
CONCURRENCY = 8


async def each(items: Iterable[T], work: Callable[[T], Awaitable[R]], limit: int = CONCURRENCY) -> list[R]:
    """`work` on every item, at most `limit` at a time; results in order."""
    gate = asyncio.Semaphore(limit)

    async def one(item: T) -> R:
        async with gate:
            return await work(item)

    return list(await asyncio.gather(*(one(item) for item in items)))


@dataclass
class Tally:
    synced: int = 0
    failed: int = 0
    stop: DriverError | None = None  # a rate limit or an auth error: no more CRM calls this pass
    failures: list[tuple[str, Any, BaseException]] = field(default_factory=list)  # (table, row, error)
