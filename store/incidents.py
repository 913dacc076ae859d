"""`crm_sync_failure` incidents: one open per (tenant, table, row), updated as attempts go on, resolved on success.

Incidents are class (b): ids, an error *type* with its status code, and counts — never a provider message.
The partial unique index `uq_incidents_open_row` makes "one open incident" hold even when the lifecycle and
the sweep escalate the same row at the same moment.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import and_, exists, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from store.base import SyncState, utcnow
from store.content import model_for
from store.models import Incident

SYNC_FAILURE = "crm_sync_failure"


async def open_sync_failure(session: AsyncSession, tenant_id: uuid.UUID, table: str, row_id: uuid.UUID, *,
                            last_error: str | None, attempts: int) -> bool:
    """Open the row's incident unless one is open already; True when this call opened it."""
    try:
        async with session.begin_nested():
            await session.execute(insert(Incident).values(
                id=uuid.uuid4(), tenant_id=tenant_id, kind=SYNC_FAILURE, table_name=table, row_id=row_id,
                status="open", last_error=last_error, attempts=attempts, opened_at=utcnow()))
    except IntegrityError:
        return False
    return True


async def note_attempt(session: AsyncSession, table: str, row_id: uuid.UUID, *, last_error: str,
                       attempts: int) -> None:
    """Keep an open incident's error type and attempt count current."""
    await session.execute(update(Incident).where(
        Incident.kind == SYNC_FAILURE, Incident.table_name == table, Incident.row_id == row_id,
        Incident.status == "open").values(last_error=last_error, attempts=attempts))


async def resolve_for_rows(session: AsyncSession, table: str, row_ids: list[uuid.UUID]) -> int:
    result = await session.execute(update(Incident).where(
        Incident.kind == SYNC_FAILURE, Incident.table_name == table, Incident.row_id.in_(row_ids),
        Incident.status == "open").values(status="resolved", resolved_at=utcnow())
        .execution_options(synchronize_session=False))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def escalate_stuck(session: AsyncSession, table: str, written_before: datetime, limit: int) -> int:
    """Open incidents for rows of `table` unsynced since before the cut-off (last content change); count opened."""
    model = model_for(table)
    has_open = exists().where(Incident.kind == SYNC_FAILURE, Incident.table_name == table,
                              Incident.row_id == model.id, Incident.status == "open")
    rows = await session.execute(
        select(model.tenant_id, model.id, model.last_sync_error, model.sync_attempts)
        .where(and_(model.sync_state != SyncState.SYNCED.value, model.updated_at < written_before), ~has_open)
        .order_by(model.updated_at).limit(limit))
    opened = 0
    for tenant_id, row_id, last_error, attempts in rows:
        opened += await open_sync_failure(session, tenant_id, table, row_id, last_error=last_error or "not_mirrored",
                                          attempts=attempts)
    return opened


async def list_for_tenant(session: AsyncSession, tenant_id: uuid.UUID, *, status: str | None, limit: int
                          ) -> list[Incident]:
    query = select(Incident).where(Incident.tenant_id == tenant_id)
    if status is not None:
        query = query.where(Incident.status == status)
    rows = await session.execute(query.order_by(Incident.opened_at.desc()).limit(limit))
    return list(rows.scalars())


async def get_for_tenant(session: AsyncSession, tenant_id: uuid.UUID, incident_id: uuid.UUID) -> Incident | None:
    row = await session.execute(select(Incident).where(Incident.tenant_id == tenant_id, Incident.id == incident_id))
    return row.scalar_one_or_none()
