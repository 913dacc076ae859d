"""The tenants page (the tenant picker) and a tenant's overview: status, provider, last sync, backlog, incidents.

Read-only queries over the tables the JSON API reads; counts and times only, no customer content.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from api.console.web import Operator, page, render, temporal_ui_url
from api.context import context_of
from store.base import SyncState
from store.models import CONTENT_TABLES, Incident, Tenant

MAX_TENANTS = 500


@dataclass(frozen=True)
class TenantRow:
    id: uuid.UUID
    name: str
    status: str
    reason: str | None
    provider: str
    last_sync: str | None
    backlog: int
    open_incidents: int
    temporal_url: str


async def tenant_rows(session: AsyncSession, tenants: list[Tenant], temporal_url: dict[uuid.UUID, str]
                      ) -> list[TenantRow]:
    ids = [tenant.id for tenant in tenants]
    # One round trip over every class-(c) table: per tenant, the newest CRM write and the rows not yet written.
    per_table = [select(model.tenant_id.label("tenant_id"), func.max(model.synced_at).label("last"),
                        func.sum(case((model.sync_state != SyncState.SYNCED.value, 1), else_=0)).label("waiting"))
                 .where(model.tenant_id.in_(ids)).group_by(model.tenant_id) for model in CONTENT_TABLES]
    last: dict[uuid.UUID, datetime] = {}
    backlog: dict[uuid.UUID, int] = {}
    for tenant_id, at, waiting in (await session.execute(union_all(*per_table))).all():
        if at is not None and (tenant_id not in last or at > last[tenant_id]):
            last[tenant_id] = at
        backlog[tenant_id] = backlog.get(tenant_id, 0) + int(waiting or 0)
    open_incidents = await session.execute(
        select(Incident.tenant_id, func.count()).where(Incident.tenant_id.in_(ids), Incident.status == "open")
        .group_by(Incident.tenant_id))
    incidents = {tenant_id: int(count) for tenant_id, count in open_incidents.all()}
    return [TenantRow(t.id, t.name, t.status, t.status_reason, t.provider,
                      last[t.id].strftime("%Y-%m-%d %H:%M UTC") if t.id in last else None,
                      backlog.get(t.id, 0), incidents.get(t.id, 0), temporal_url[t.id]) for t in tenants]


@page
async def tenants(request: Request, operator: Operator) -> Response:
    """The tenant picker: every tenant for a platform operator, only its own for a pinned one."""
    ctx = context_of(request)
    q = request.query_params.get("q", "").strip()[:200]
    query = select(Tenant).order_by(Tenant.name).limit(MAX_TENANTS)
    if operator.pinned is not None:
        query = query.where(Tenant.id == operator.pinned)
    if q:
        query = query.where(Tenant.name.ilike(f"%{q}%"))
    async with ctx.sessions() as session:
        found = list((await session.execute(query)).scalars())
        rows = await tenant_rows(session, found, {t.id: temporal_ui_url(ctx, t.id) for t in found})
    return render(request, "tenants.html", rows=rows, q=q)


@page
async def overview(request: Request, operator: Operator) -> Response:
    ctx = context_of(request)
    tenant: Tenant = request.state.tenant
    async with ctx.sessions() as session:
        [row] = await tenant_rows(session, [tenant], {tenant.id: temporal_ui_url(ctx, tenant.id)})
    return render(request, "overview.html", tenant=tenant, row=row, active="Overview",
                  temporal_url=row.temporal_url)
