"""The mirror outbox: intents written in the same transaction as the class-(c) row, drained by the relay.

Ops: `create` (a new row), `update` (the agent changed it), `append` (a message; its conversation's
transcript takes it), `redrive` (an operator asked for a retry now; the row is the incident), `ensure` (the sweep
found a row that fell through: its tenant's mirror is not running), `reconnected` (the tenant's connection works
again: unpark its mirror; the row is the tenant), `wake` (unused since the tenant mirror).
Every intent wakes its tenant's mirror (`mirror:{tenant}`); the rows themselves say what is left to do.
Claiming uses `FOR UPDATE SKIP LOCKED` on PostgreSQL, so relays in several
processes take disjoint batches; SQLite has a single writer, and a duplicate delivery is harmless anyway
(workflow ids are deterministic and every signal is idempotent in effect).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Insert, Table, bindparam, delete, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.base import utcnow
from store.models import MirrorOutbox

OUTBOX: Table = MirrorOutbox.__table__  # type: ignore[assignment]
OPS = ("create", "update", "append", "redrive", "ensure", "reconnected", "wake")


@dataclass(frozen=True)
class Intent:
    """One claimed outbox entry (ids only)."""

    id: int
    tenant_id: uuid.UUID
    table_name: str
    row_id: uuid.UUID
    op: str
    created_at: datetime


def intent_values(tenant_id: uuid.UUID, table: str, row_id: uuid.UUID, op: str) -> dict[str, object]:
    if op not in OPS:
        raise ValueError(f"unknown outbox op {op!r}")
    return {"tenant_id": tenant_id, "table_name": table, "row_id": row_id, "op": op,
            "created_at": utcnow(), "relay_attempts": 0}


async def add(session: AsyncSession, intents: list[dict[str, object]]) -> None:
    """Queue intents in the caller's transaction (one executemany for a batch of messages)."""
    if intents:
        await (await session.connection()).execute(insert(OUTBOX), intents)


async def claim(session: AsyncSession, limit: int, *, skip_locked: bool,
                tenants: Collection[uuid.UUID] | None = None) -> list[Intent]:
    """The oldest unrelayed intents (of these tenants only, if given), locked for this transaction where the
    database can do that."""
    query = (select(MirrorOutbox.id, MirrorOutbox.tenant_id, MirrorOutbox.table_name, MirrorOutbox.row_id,
                    MirrorOutbox.op, MirrorOutbox.created_at)
             .where(MirrorOutbox.relayed_at.is_(None)).order_by(MirrorOutbox.id).limit(limit))
    if tenants is not None:
        query = query.where(MirrorOutbox.tenant_id.in_(list(tenants)))
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    rows = await session.execute(query)
    return [Intent(*row) for row in rows.all()]


async def mark_relayed(session: AsyncSession, ids: list[int]) -> None:
    if ids:
        await session.execute(update(MirrorOutbox).where(MirrorOutbox.id.in_(ids)).values(relayed_at=utcnow()))


async def count_failed_attempt(session: AsyncSession, ids: list[int]) -> None:
    if ids:
        await session.execute(update(MirrorOutbox).where(MirrorOutbox.id.in_(ids))
                              .values(relay_attempts=MirrorOutbox.relay_attempts + 1))


async def pending_for(session: AsyncSession, table: str, row_id: uuid.UUID) -> bool:
    """Whether the row already has an intent waiting for the relay."""
    found = await session.execute(select(exists().where(
        MirrorOutbox.table_name == table, MirrorOutbox.row_id == row_id, MirrorOutbox.relayed_at.is_(None))))
    return bool(found.scalar())


async def pending_for_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> bool:
    """Whether the tenant already has an intent waiting for the relay (which will wake its mirror)."""
    found = await session.execute(select(exists().where(
        MirrorOutbox.tenant_id == tenant_id, MirrorOutbox.relayed_at.is_(None))))
    return bool(found.scalar())


async def backlog(session: AsyncSession) -> int:
    count = await session.execute(select(func.count()).select_from(MirrorOutbox)
                                  .where(MirrorOutbox.relayed_at.is_(None)))
    return int(count.scalar_one())


async def prune_relayed(session: AsyncSession, older_than: timedelta, as_of: datetime, limit: int) -> int:
    """Drop delivered intents after a grace period (kept a while for debugging a relay)."""
    chosen = (select(MirrorOutbox.id).where(MirrorOutbox.relayed_at.is_not(None),
                                            MirrorOutbox.relayed_at < as_of - older_than)
              .order_by(MirrorOutbox.id).limit(limit))
    result = await session.execute(delete(MirrorOutbox).where(MirrorOutbox.id.in_(chosen.scalar_subquery()))
                                   .execution_options(synchronize_session=False))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def insert_with_intent(session: AsyncSession, model: Any, values: dict[str, Any], op: str = "create"
                             ) -> None:
    """Insert one class-(c) row (every column given) and its intent, in the caller's transaction.

    On PostgreSQL both go in one statement (`WITH row AS (INSERT … RETURNING id) INSERT INTO mirror_outbox …`):
    one round trip on the hot path instead of two. Elsewhere, two statements.
    """
    intent = intent_values(values["tenant_id"], model.__tablename__, values["id"], op)
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        await connection.execute(insert(model.__table__), values)
        await connection.execute(insert(OUTBOX), intent)
        return
    params = {f"r_{key}": value for key, value in values.items()} | {f"o_{key}": value for key, value in intent.items()}
    await connection.execute(_row_and_intent(model.__table__), params)


@functools.cache
def _row_and_intent(table: Table) -> Insert:
    """The one-statement insert, built once per table with bind parameters (so SQLAlchemy caches its SQL)."""
    row = insert(table).values({c.key: bindparam(f"r_{c.key}", type_=c.type) for c in table.c}) \
        .returning(table.c.id).cte("row")
    outbox = OUTBOX.c
    names = ["tenant_id", "table_name", "row_id", "op", "created_at", "relay_attempts"]
    chosen = select(*(row.c.id if name == "row_id" else bindparam(f"o_{name}", type_=outbox[name].type)
                      for name in names)).select_from(row)
    return insert(OUTBOX).from_select(names, chosen)
