"""Operator route: a tenant's class-(c) rows by sync state — counts, and a page of one table's rows.

`GET /api/tenants/{tenant_id}/records?table=customers&state=retrying&after=<id>&limit=100` (operator JWT; an
operator pinned to a tenant sees only it). Ids, states, attempt counts and error codes only — no content.
States are the rows' own: pending, retrying, blocked, synced (README "Sync states").
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api.auth import require_operator
from api.context import context_of
from api.errors import Problem
from api.lifecycle import mirror_workflow_id
from api.openapi import document
from store import content
from store.base import SyncState

STATES = tuple(state.value for state in SyncState)


class RowState(BaseModel):
    id: str
    sync_state: str
    sync_attempts: int
    last_sync_error: str | None  # an error code and status (`unavailable:503`), never a provider message
    retry_at: str | None


class RecordPage(BaseModel):
    tenant_id: str
    workflow_id: str  # the tenant's mirror
    counts: dict[str, dict[str, int]]  # table -> state -> rows
    table: str
    state: str | None
    rows: list[RowState]
    next_after: str | None  # pass as `after` for the next page; None: this was the last


def _query(request: Request) -> tuple[uuid.UUID, str, str | None, uuid.UUID | None, int]:
    try:
        tenant_id = uuid.UUID(request.path_params["tenant_id"])
    except ValueError:
        raise Problem(404, "not-found", "No such tenant.") from None
    params = request.query_params
    table, state = params.get("table", "customers"), params.get("state")
    if table not in content.TABLES:
        raise Problem(422, "invalid-query", f"table must be one of {', '.join(sorted(content.TABLES))}.")
    if state is not None and state not in STATES:
        raise Problem(422, "invalid-query", f"state must be one of {', '.join(STATES)}.")
    try:
        after = uuid.UUID(params["after"]) if params.get("after") else None
        limit = min(max(int(params.get("limit", "100")), 1), 1000)
    except ValueError:
        raise Problem(422, "invalid-query", "after must be a row id and limit an integer.") from None
    return tenant_id, table, state, after, limit


@document(responses={200: RecordPage}, auth="operator", errors={404: "No such tenant (for this operator)"})
async def list_records(request: Request) -> JSONResponse:
    """A tenant's rows by sync state: counts per table and state, and a page of one table's rows (by id)."""
    tenant_id, table, state, after, limit = _query(request)
    require_operator(request, tenant_id)
    model = content.model_for(table)
    async with context_of(request).sessions() as session:
        counts = await content.state_counts(session, tenant_id)
        query = select(model.id, model.sync_state, model.sync_attempts, model.last_sync_error, model.retry_at).where(
            model.tenant_id == tenant_id)
        if state is not None:
            query = query.where(model.sync_state == state)
        if after is not None:
            query = query.where(model.id > after)
        rows = (await session.execute(query.order_by(model.id).limit(limit + 1))).all()
    page: list[dict[str, Any]] = [
        {"id": str(row_id), "sync_state": row_state, "sync_attempts": attempts, "last_sync_error": error,
         "retry_at": retry_at.isoformat() if retry_at else None}
        for row_id, row_state, attempts, error, retry_at in rows[:limit]]
    return JSONResponse({"tenant_id": str(tenant_id), "workflow_id": mirror_workflow_id(tenant_id), "counts": counts,
                         "table": table, "state": state, "rows": page,
                         "next_after": page[-1]["id"] if len(rows) > limit else None})


routes = [Route("/api/tenants/{tenant_id}/records", list_records, methods=["GET"])]
