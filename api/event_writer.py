"""Group commit for inbound events: concurrent deliveries share one transaction.

A burst of webhooks (a CRM import, a retry storm after an outage) would otherwise be one transaction and one
pooled connection per delivery, and the pool — not the work — would decide when they are acked. Each request
adds its rows and waits; whoever takes the lock writes every waiting request's rows in one transaction and
answers each with its new row ids. Every request still gets its answer only after its rows are committed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store import outbound

MAX_ROWS_PER_STATEMENT = 500  # well under PostgreSQL's 65,535 bind parameters at 13 columns a row


class EventWriter:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._waiting: list[tuple[Sequence[dict[str, Any]], asyncio.Future[list[uuid.UUID]]]] = []
        self._lock = asyncio.Lock()

    async def write(self, rows: Sequence[dict[str, Any]]) -> list[uuid.UUID]:
        """Insert `rows` (deduped on tenant, provider, event id); the ids of those that were new, once committed."""
        if not rows:
            return []
        answer: asyncio.Future[list[uuid.UUID]] = asyncio.get_running_loop().create_future()
        self._waiting.append((rows, answer))
        async with self._lock:
            if not answer.done():
                batch, self._waiting = self._waiting, []
                await self._commit(batch)
        return await answer

    async def _commit(self, batch: list[tuple[Sequence[dict[str, Any]], asyncio.Future[list[uuid.UUID]]]]) -> None:
        all_rows = [row for rows, _ in batch for row in rows]
        try:
            new: set[uuid.UUID] = set()
            async with self._sessions() as session, session.begin():
                for start in range(0, len(all_rows), MAX_ROWS_PER_STATEMENT):
                    new.update(await outbound.insert_events(session, all_rows[start:start + MAX_ROWS_PER_STATEMENT]))
        except BaseException as exc:
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for rows, answer in batch:
            if not answer.done():
                answer.set_result([row["id"] for row in rows if row["id"] in new])
