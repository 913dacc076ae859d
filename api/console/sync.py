"""The sync page: a tenant's rows by sync state, search by record id, and one record's sync history.

Shows ids, states, counts, times and error codes only — never a row's content columns.

Counts come from `store.content.state_counts`, as for the operator records route; the states are the mirror's
(pending, retrying, blocked, synced).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from api.console.web import Operator, page, render, temporal_ui_url, temporal_workflow_url
from api.context import context_of
from api.lifecycle import mirror_workflow_id
from store import content
from store.content import TABLES
from store.models import Incident, MirrorOutbox, Tenant

PAGE = 100


@dataclass(frozen=True)
class SyncRow:
    """A row's sync columns (no content)."""

    table: str
    id: uuid.UUID
    sync_state: str
    sync_attempts: int
    last_sync_error: str | None
    crm_external_id: str | None
    created_at: datetime
    updated_at: datetime
    synced_at: datetime | None
    purge_after: datetime | None


def _sync_columns(model: Any) -> list[Any]:
    return [model.id, model.sync_state, model.sync_attempts, model.last_sync_error, model.crm_external_id,
            model.created_at, model.updated_at, model.synced_at, model.purge_after]


async def rows_in(session: AsyncSession, tenant_id: uuid.UUID, table: str, state: str | None) -> list[SyncRow]:
    model = TABLES[table]
    query = select(*_sync_columns(model)).where(model.tenant_id == tenant_id)
    if state:
        query = query.where(model.sync_state == state)
    result = await session.execute(query.order_by(model.updated_at.desc()).limit(PAGE))
    return [SyncRow(table, *row) for row in result.all()]


@dataclass(frozen=True)
class History:
    row: SyncRow
    intents: list[MirrorOutbox]
    incidents: list[Incident]
    workflow_id: str


async def record_history(session: AsyncSession, tenant_id: uuid.UUID, record_id: uuid.UUID) -> History | None:
    """The record's sync columns, its mirror intents (each a write asked for), the tenant's incidents for the
    failure the record shares (incidents are per tenant and failure kind), and the tenant mirror's workflow id."""
    for table, model in TABLES.items():
        found = (await session.execute(select(*_sync_columns(model)).where(
            model.tenant_id == tenant_id, model.id == record_id))).first()
        if found is None:
            continue
        intents = (await session.execute(select(MirrorOutbox).where(
            MirrorOutbox.tenant_id == tenant_id, MirrorOutbox.table_name == table, MirrorOutbox.row_id == record_id)
            .order_by(MirrorOutbox.id.desc()).limit(50))).scalars()
        row = SyncRow(table, *found)
        incidents: list[Incident] = []
        if row.last_sync_error:
            incidents = list((await session.execute(select(Incident).where(
                Incident.tenant_id == tenant_id, Incident.failure_kind == row.last_sync_error)
                .order_by(Incident.opened_at.desc()).limit(20))).scalars())
        return History(row, list(intents), incidents, mirror_workflow_id(tenant_id))
    return None


@page
async def sync_page(request: Request, operator: Operator) -> Response:
    ctx = context_of(request)
    tenant: Tenant = request.state.tenant
    params = request.query_params
    table = params.get("table") if params.get("table") in TABLES else None
    state = (params.get("state") or "")[:16] or None
    record, history, error = params.get("record", "").strip(), None, None
    async with ctx.sessions() as session:
        counts = await content.state_counts(session, tenant.id)
        rows = await rows_in(session, tenant.id, table, state) if table else []
        if record:
            try:
                history = await record_history(session, tenant.id, uuid.UUID(record))
            except ValueError:
                error = "A record id looks like 3f2b…-…: a UUID."
            else:
                if history is None:
                    error = "No record with that id in this tenant (it may have been purged after its window)."
    states = sorted({s for per_table in counts.values() for s in per_table})
    return render(request, "sync.html", tenant=tenant, counts=counts, states=states, rows=rows, table=table,
                  state=state, record=record, history=history, error=error, active="Sync",
                  temporal_url=temporal_ui_url(ctx, tenant.id),
                  workflow_url=temporal_workflow_url(ctx, history.workflow_id) if history else None)
