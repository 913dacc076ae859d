"""Class-(c) rows through their lifecycle: retention windows, sync marks, and the guarded purge.

The purge is the product's promise in SQL: every DELETE here carries `sync_state = 'synced' AND
crm_external_id IS NOT NULL AND synced_at IS NOT NULL AND purge_after <= :as_of` and no erasure hold on the
row in the statement itself, so no caller (a bug, a race with an update that set the row back to pending, a
hand-written script) can purge a row the CRM does not hold, or one an erasure is still working on. Sync
marks are compare-and-set on `updated_at`: a row changed while its CRM write was in flight stays pending,
and the next write carries the change.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Integer,
    String,
    and_,
    any_,
    case,
    cast,
    delete,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement
from sqlalchemy.types import UserDefinedType

from store.base import ContentRow, SyncState, utcnow
from store.models import CONTENT_TABLES, Conversation, ErasureHold, Message

TABLES: dict[str, Any] = {model.__tablename__: model for model in CONTENT_TABLES}  # type: ignore[attr-defined]

# Purge order for the sweep: children before parents (a conversation waits for its messages).
PURGE_ORDER = ("messages", "qualification_states", "appointments", "cases", "leads", "conversations", "customers")
# Mirror order: a row after the rows it hangs off (customer before its lead/appointment/case/transcript).
# Messages ride on their conversation (one transcript note): a conversation stays unsynced while one waits.
MIRROR_ORDER = ("customers", "leads", "qualification_states", "appointments", "cases", "conversations")


def model_for(table: str) -> Any:
    try:
        return TABLES[table]
    except KeyError:
        raise LookupError(f"{table!r} is not a class-(c) table") from None


def retention_days(table: str, overrides: Mapping[str, int] | None = None) -> int:
    """The table's window (declared in store/models.py), unless settings override it."""
    if overrides and table in overrides:
        return int(overrides[table])
    days: int = model_for(table).__table__.info["retention_days"]
    return days


def retention(table: str, overrides: Mapping[str, int] | None = None) -> timedelta:
    return timedelta(days=retention_days(table, overrides))


def purgeable(model: Any, as_of: datetime) -> ColumnElement[bool]:
    """The condition no purge may drop: synced, with the CRM's id, past its window, and held by no erasure.

    'synced' is rendered into the SQL, not bound: the partial index `ix_<table>_purgeable` (migration 0006) is
    declared on that literal, and a prepared statement's generic plan can only use it when the query says so.
    """
    synced = literal(SyncState.SYNCED.value, String, literal_execute=True)
    condition = and_(model.sync_state == synced, model.crm_external_id.is_not(None),
                     model.synced_at.is_not(None), model.purge_after.is_not(None), model.purge_after <= as_of,
                     # An erasure in progress owns its rows until its scrub: it reads their CRM ids first.
                     ~exists().where(ErasureHold.tenant_id == model.tenant_id, ErasureHold.row_id == model.id))
    if model is Conversation:
        # A conversation outlives its messages: its transcript note is what they hang off.
        condition = and_(condition, ~exists().where(Message.conversation_id == Conversation.id))
    return condition


class _TidArray(UserDefinedType[Any]):
    """PostgreSQL's `tid[]`, an array of row addresses."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "tid[]"


# Where the sweep's batched purge of (table, as_of, tenant, conversation) got to, in this process. Deleted rows
# leave their index entries until VACUUM, all at the front of `ix_<table>_purgeable`: without this, batch k
# walks past the entries of batches 1..k-1 and a long purge slows down quadratically. Never a correctness
# matter (the guard is in the SQL either way): at worst a row behind the mark waits for the next sweep.
_RESUME: dict[tuple[str, datetime, uuid.UUID | None, uuid.UUID | None], datetime] = {}


async def purge(session: AsyncSession, table: str, as_of: datetime, *, tenant_id: uuid.UUID | None = None,
                row_ids: list[uuid.UUID] | None = None, conversation_id: uuid.UUID | None = None,
                limit: int | None = None) -> int:
    """Delete purgeable rows (optionally of one tenant / these ids / one conversation's messages); count.

    With `limit` (the sweep's batches, one transaction each) rows go in `purge_after` order along
    `ix_<table>_purgeable`, each batch resuming where the last one ended; 10,000 a batch is a good size (the
    fixed cost of a batch is a few round trips: `bench/purge.py`). On PostgreSQL the chosen rows' addresses are
    gathered first and the DELETE goes to them directly (with `id IN (…)`, the generic plan psycopg's prepared
    statement gets after five executions walked every purgeable row for every batch). A row changed by
    someone else meanwhile has moved to a new address and is left alone, as the repeated guard would anyway.
    """
    model = model_for(table)
    postgres = session.get_bind().dialect.name == "postgresql"
    resume_key = (table, as_of, tenant_id, conversation_id) if postgres and limit is not None and not row_ids else None
    chosen = select(model.id).where(purgeable(model, as_of))
    if tenant_id is not None:
        chosen = chosen.where(model.tenant_id == tenant_id)
    if row_ids is not None:
        chosen = chosen.where(model.id.in_(row_ids))
    if conversation_id is not None:
        chosen = chosen.where(model.conversation_id == conversation_id)
    if resume_key is not None and resume_key in _RESUME:
        chosen = chosen.where(model.purge_after >= _RESUME[resume_key])
    if limit is not None:
        chosen = chosen.order_by(model.purge_after).limit(literal(int(limit), Integer, literal_execute=True))
    if not postgres:
        # The guard is repeated on the DELETE itself: a row set back to pending after the SELECT stays.
        result = await session.execute(delete(model).where(model.id.in_(chosen.scalar_subquery()),
                                                           purgeable(model, as_of))
                                       .execution_options(synchronize_session=False))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
    if limit is not None:
        # For this transaction only (its purge alone): no flush to disk at commit, since a crash can only lose
        # the last few batches, whose rows the next sweep purges again; and a plan made for this batch's own
        # bounds, not the generic plan of the prepared statement, whose guesses for them can sort every
        # purgeable row to take the first `limit`.
        await session.execute(text("SELECT set_config('synchronous_commit', 'off', true), "
                                   "set_config('plan_cache_mode', 'force_custom_plan', true)"))
    # By physical address (ctid, a TID scan): no second walk down the primary key for each chosen row.
    ctid: ColumnElement[Any] = literal_column("ctid")
    rows = select(func.array_agg(chosen.add_columns(ctid).subquery().c.ctid)).scalar_subquery()
    gone = (delete(model).where(ctid == any_(cast(rows, _TidArray())),  # the cast: ANY of an array, not rows
                                purgeable(model, as_of))  # the guard again: a row set back to pending stays
            .returning(model.purge_after).cte("gone"))
    count, last = (await session.execute(select(func.count(gone.c.purge_after), func.max(gone.c.purge_after)))).one()
    if resume_key is not None:
        if count < int(limit or 0):
            _RESUME.pop(resume_key, None)  # this purge is done
        else:
            if len(_RESUME) > 1000:  # bounded: marks of abandoned runs are forgotten
                _RESUME.clear()
            _RESUME[resume_key] = last
    return int(count)


async def load(session: AsyncSession, table: str, tenant_id: uuid.UUID, row_id: uuid.UUID) -> Any | None:
    model = model_for(table)
    row = await session.execute(select(model).where(model.tenant_id == tenant_id, model.id == row_id))
    return row.scalar_one_or_none()


async def mark_synced(session: AsyncSession, table: str, row: ContentRow, external_id: str, synced_at: datetime,
                      window: timedelta) -> bool:
    """Record the CRM write, unless the row changed since it was read (then it stays pending): True if marked.

    The successful write counts as an attempt too: `sync_attempts` is how many CRM writes the row took.
    """
    model = model_for(table)
    result = await session.execute(
        update(model).where(model.id == row.id, model.updated_at == row.updated_at)
        .values(sync_state=SyncState.SYNCED.value, crm_external_id=external_id, synced_at=synced_at,
                purge_after=synced_at + window, last_sync_error=None, retry_at=None,
                sync_attempts=model.sync_attempts + 1, updated_at=model.updated_at)
        .execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def mark_synced_many(session: AsyncSession, table: str, written: list[tuple[ContentRow, str]],
                           synced_at: datetime, window: timedelta) -> list[uuid.UUID]:
    """`mark_synced` for a batch in one statement — (row as read, its CRM id) each; the ids it marked. A row
    changed since it was read (another `updated_at`) stays pending, as with `mark_synced`."""
    if not written:
        return []
    model = model_for(table)
    ids = {row.id: external_id for row, external_id in written}
    result = await session.execute(
        update(model).where(tuple_(model.id, model.updated_at).in_([(row.id, row.updated_at) for row, _ in written]))
        .values(sync_state=SyncState.SYNCED.value, crm_external_id=case(ids, value=model.id), synced_at=synced_at,
                purge_after=synced_at + window, last_sync_error=None, retry_at=None,
                sync_attempts=model.sync_attempts + 1, updated_at=model.updated_at)
        .returning(model.id).execution_options(synchronize_session=False))
    return list(result.scalars())


async def remember_external_id(session: AsyncSession, table: str, row_id: uuid.UUID, external_id: str) -> None:
    """Keep a CRM id as soon as it exists (a transcript note), even though the row is not fully synced."""
    model = model_for(table)
    await session.execute(update(model).where(model.id == row_id)
                          .values(crm_external_id=external_id, updated_at=model.updated_at)
                          .execution_options(synchronize_session=False))


async def record_failure(session: AsyncSession, table: str, row_ids: list[uuid.UUID], error: str, *, state: SyncState,
                         retry_at: datetime | None, attempted: bool = True) -> None:
    """A failed (or, `attempted=False`, a deferred) CRM write of these rows: its error type and status only, the
    state saying who fixes it, and when the mirror may try again. Rows synced meanwhile are left alone."""
    if not row_ids:
        return
    model = model_for(table)
    values: dict[str, Any] = {"sync_state": state.value, "last_sync_error": error, "retry_at": retry_at,
                              "updated_at": model.updated_at}
    if attempted:
        values["sync_attempts"] = model.sync_attempts + 1
    await session.execute(update(model).where(model.id.in_(row_ids), model.sync_state != SyncState.SYNCED.value)
                          .values(**values).execution_options(synchronize_session=False))


async def touch_pending(session: AsyncSession, table: str, tenant_id: uuid.UUID, row_id: uuid.UUID,
                        values: Mapping[str, Any] | None = None) -> bool:
    """Apply an update from the agent and set the row back to pending, so no purge can drop the change."""
    model = model_for(table)
    result = await session.execute(
        update(model).where(model.tenant_id == tenant_id, model.id == row_id)
        .values(**dict(values or {}), sync_state=SyncState.PENDING.value, retry_at=None, updated_at=utcnow())
        .execution_options(synchronize_session=False))
    return bool(result.rowcount)  # type: ignore[attr-defined]


# Rows whose CRM write needs another row's CRM record first: (table, column pointing at that row).
DEPENDENTS: dict[str, tuple[tuple[str, str], ...]] = {
    "customers": (("leads", "customer_id"), ("appointments", "customer_id"), ("cases", "customer_id"),
                  ("conversations", "customer_id")),
    "leads": (("qualification_states", "lead_id"),),
}


async def wake_dependents(session: AsyncSession, table: str, row_ids: list[uuid.UUID]) -> int:
    """Rows that waited for these rows to reach the CRM may go at once (their `retry_at` is cleared)."""
    woken = 0
    for dependent, column in DEPENDENTS.get(table, ()):
        model = model_for(dependent)
        result = await session.execute(
            update(model).where(getattr(model, column).in_(row_ids), model.sync_state != SyncState.SYNCED.value,
                                model.retry_at.is_not(None))
            .values(retry_at=None, updated_at=model.updated_at).execution_options(synchronize_session=False))
        woken += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return woken


def unsynced(model: Any) -> ColumnElement[bool]:
    condition: ColumnElement[bool] = model.sync_state != SyncState.SYNCED.value
    return condition


def due(model: Any, as_of: datetime) -> ColumnElement[bool]:
    """Unsynced and free to be tried now."""
    return and_(unsynced(model), or_(model.retry_at.is_(None), model.retry_at <= as_of))


async def due_rows(session: AsyncSession, table: str, tenant_id: uuid.UUID, as_of: datetime, limit: int) -> list[Any]:
    """The tenant's rows of `table` the mirror may try now, oldest first."""
    model = model_for(table)
    rows = await session.execute(select(model).where(model.tenant_id == tenant_id, due(model, as_of))
                                 .order_by(model.created_at).limit(limit))
    return list(rows.scalars())


async def any_due(session: AsyncSession, tenant_id: uuid.UUID, as_of: datetime) -> bool:
    for table in MIRROR_ORDER:
        model = model_for(table)
        if (await session.execute(select(model.id).where(model.tenant_id == tenant_id, due(model, as_of))
                                  .limit(1))).first() is not None:
            return True
    return False


async def backlog(session: AsyncSession, tenant_id: uuid.UUID, as_of: datetime
                  ) -> tuple[dict[str, int], datetime | None]:
    """(the tenant's unsynced rows per sync state, the earliest moment one of them may be tried; None: nothing
    unsynced). Messages are counted, but their conversation is what the mirror tries."""
    states: dict[str, int] = {}
    earliest: datetime | None = None
    for table in (*MIRROR_ORDER, "messages"):
        model = model_for(table)
        rows = await session.execute(
            select(model.sync_state, func.count(), func.min(model.retry_at),
                   func.count().filter(model.retry_at.is_(None)))
            .where(model.tenant_id == tenant_id, unsynced(model)).group_by(model.sync_state))
        for state, count, soonest, undated in rows:
            states[state] = states.get(state, 0) + int(count)
            moment = None if table == "messages" else (as_of if undated else soonest)
            if moment is not None and (earliest is None or moment < earliest):
                earliest = moment
    return states, earliest


async def state_counts(session: AsyncSession, tenant_id: uuid.UUID) -> dict[str, dict[str, int]]:
    """{table: {sync state: rows}} over every class-(c) table of the tenant, in one round trip."""
    counts: dict[str, dict[str, int]] = {table: {} for table in TABLES}
    per_table = [select(literal(table).label("table_name"), model_for(table).sync_state, func.count())
                 .where(model_for(table).tenant_id == tenant_id).group_by(model_for(table).sync_state)
                 for table in TABLES]
    for table, state, n in (await session.execute(union_all(*per_table))).all():
        counts[str(table)][str(state)] = int(n)
    return counts


async def fell_through(session: AsyncSession, table: str, before: datetime, limit: int
                       ) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(tenant, row) of unsynced rows that were due before `before` and are still untried: no mirror is
    handling their tenant (a mirror tries a due row within seconds). One row per tenant is enough to wake it."""
    model = model_for(table)
    rows = await session.execute(
        select(model.tenant_id, func.min(model.id.cast(String))).where(
            unsynced(model), model.updated_at < before, or_(model.retry_at.is_(None), model.retry_at < before))
        .group_by(model.tenant_id).limit(limit))
    return [(tenant, uuid.UUID(str(row))) for tenant, row in rows]
