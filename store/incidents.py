"""`crm_sync_failure` incidents: one open per (tenant, failure kind), carrying how many rows it affects.

A row unsynced 24 hours after its insert is *stuck*; the stuck rows of a tenant are grouped by the code of their
last error (`unavailable`, `auth_error`, `unmapped_fields`, …, or `not_mirrored` when nothing was tried) and
each group is one incident: a CRM down for a day is one incident with its row count, not thousands. The mirror
and the sweep both call `escalate_tenant`; the partial unique index `uq_incidents_open_kind` keeps "one open
incident" true when they race. An incident resolves when none of its rows is stuck any more.

Incidents are class (b): ids, an error *code* with its status, and counts — never a provider message.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement

from store.base import SyncState, utcnow
from store.content import MIRROR_ORDER, model_for
from store.models import Incident

SYNC_FAILURE = "crm_sync_failure"
NOT_MIRRORED = "not_mirrored"


def failure_kind(last_error: str | None) -> str:
    """`unavailable:503` → `unavailable`; no error yet → `not_mirrored`."""
    return (last_error or NOT_MIRRORED).partition(":")[0][:32]


def _of_kind(model: Any, kind: str) -> ColumnElement[bool]:
    condition: ColumnElement[bool] = model.last_sync_error.is_(None) if kind == NOT_MIRRORED else \
        (model.last_sync_error == kind) | model.last_sync_error.like(f"{kind}:%")
    return condition


async def _stuck(session: AsyncSession, tenant_id: uuid.UUID, inserted_before: datetime
                 ) -> dict[str, tuple[int, int, str | None]]:
    """failure kind → (stuck rows, most attempts of one, a last error label)."""
    groups: dict[str, tuple[int, int, str | None]] = {}
    for table in MIRROR_ORDER:
        model = model_for(table)
        rows = await session.execute(
            select(model.last_sync_error, func.count(), func.max(model.sync_attempts))
            .where(model.tenant_id == tenant_id, model.sync_state != SyncState.SYNCED.value,
                   model.created_at < inserted_before).group_by(model.last_sync_error))
        for label, count, attempts in rows:
            kind = failure_kind(label)
            rows_before, most, seen = groups.get(kind, (0, 0, None))
            groups[kind] = (rows_before + int(count), max(most, int(attempts or 0)), seen or label)
    return groups


async def escalate_tenant(session: AsyncSession, tenant_id: uuid.UUID, inserted_before: datetime) -> int:
    """Bring the tenant's incidents in line with its stuck rows: open one per new failure kind, update the row
    counts of open ones, resolve those with no stuck row left. Returns how many it opened."""
    stuck = await _stuck(session, tenant_id, inserted_before)
    open_now = {i.failure_kind: i for i in await list_for_tenant(session, tenant_id, status="open", limit=1000)
                if i.kind == SYNC_FAILURE}
    opened = 0
    for kind, (count, attempts, label) in stuck.items():
        if kind in open_now:
            await session.execute(update(Incident).where(Incident.id == open_now[kind].id).values(
                row_count=count, attempts=attempts, last_error=label))
            continue
        try:
            async with session.begin_nested():
                await session.execute(insert(Incident).values(
                    id=uuid.uuid4(), tenant_id=tenant_id, kind=SYNC_FAILURE, failure_kind=kind, status="open",
                    last_error=label, attempts=attempts, row_count=count, opened_at=utcnow()))
            opened += 1
        except IntegrityError:  # the sweep and the mirror escalated at the same moment: theirs stands
            pass
    gone = [i.id for kind, i in open_now.items() if kind not in stuck]
    if gone:
        await session.execute(update(Incident).where(Incident.id.in_(gone), Incident.status == "open")
                              .values(status="resolved", resolved_at=utcnow(), row_count=0)
                              .execution_options(synchronize_session=False))
    return opened


async def tenants_with_stuck_rows(session: AsyncSession, inserted_before: datetime, limit: int) -> list[uuid.UUID]:
    found: set[uuid.UUID] = set()
    for table in MIRROR_ORDER:
        model = model_for(table)
        rows = await session.execute(select(model.tenant_id).where(
            model.sync_state != SyncState.SYNCED.value, model.created_at < inserted_before).distinct().limit(limit))
        found.update(rows.scalars())
    return sorted(found)[:limit]


async def redrive(session: AsyncSession, incident: Incident) -> int:
    """Every unsynced row of the incident's tenant and failure kind may be tried at once; how many rows."""
    kind, total = incident.failure_kind or NOT_MIRRORED, 0
    for table in MIRROR_ORDER:
        model = model_for(table)
        result = await session.execute(
            update(model).where(model.tenant_id == incident.tenant_id, model.sync_state != SyncState.SYNCED.value,
                                _of_kind(model, kind))
            .values(retry_at=None, updated_at=model.updated_at).execution_options(synchronize_session=False))
        total += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return total


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
