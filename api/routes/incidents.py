"""Operator routes: a tenant's `crm_sync_failure` incidents, and redrive (retry the CRM write now).

A redrive is queued as a `redrive` intent in the outbox — accepted even while Temporal is away — and the
relay turns it into the lifecycle's `redrive` signal (signal-with-start: a lifecycle that is gone is
started again). The lifecycle resolves the incident when its write succeeds.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api.auth import require_operator
from api.context import AppContext, context_of
from api.errors import Problem
from api.lifecycle import workflow_id
from api.openapi import document
from store import incidents, outbox
from store.models import Incident

STATUSES = ("open", "resolved")


class IncidentView(BaseModel):
    """One incident: ids, kind, state and an error code (never a CRM message)."""

    id: str
    kind: str
    status: str
    table: str | None
    row_id: str | None
    last_error: str | None
    attempts: int
    opened_at: str
    resolved_at: str | None
    workflow_id: str | None


class IncidentList(BaseModel):
    tenant_id: str
    incidents: list[IncidentView]


class Redriven(BaseModel):
    """The incidents whose rows were queued for a retry now."""

    tenant_id: str
    redriven: list[IncidentView]


def _uuid(request: Request, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(request.path_params[name])
    except ValueError:
        raise Problem(404, "not-found", f"No such {name.removesuffix('_id')}.") from None


def _view(incident: Incident) -> dict[str, Any]:
    wid = (workflow_id(incident.tenant_id, incident.table_name, incident.row_id)
           if incident.table_name and incident.row_id else None)
    return {"id": str(incident.id), "kind": incident.kind, "status": incident.status,
            "table": incident.table_name, "row_id": str(incident.row_id) if incident.row_id else None,
            "last_error": incident.last_error, "attempts": incident.attempts,
            "opened_at": incident.opened_at.isoformat(),
            "resolved_at": incident.resolved_at.isoformat() if incident.resolved_at else None, "workflow_id": wid}


@document(responses={200: IncidentList}, auth="operator", errors={404: "No such tenant (for this operator)"})
async def list_incidents(request: Request) -> JSONResponse:
    """A tenant's incidents, newest first (query `status=open|resolved`, `limit` up to 1000)."""
    tenant_id = _uuid(request, "tenant_id")
    require_operator(request, tenant_id)
    status = request.query_params.get("status")
    if status is not None and status not in STATUSES:
        raise Problem(422, "invalid-query", "status must be open or resolved.")
    try:
        limit = min(max(int(request.query_params.get("limit", "100")), 1), 1000)
    except ValueError:
        raise Problem(422, "invalid-query", "limit must be an integer.") from None
    async with context_of(request).sessions() as session:
        rows = await incidents.list_for_tenant(session, tenant_id, status=status, limit=limit)
    return JSONResponse({"tenant_id": str(tenant_id), "incidents": [_view(i) for i in rows]})


async def _queue_redrives(request: Request, tenant_id: uuid.UUID, chosen: list[Incident]) -> JSONResponse:
    targets = await queue_redrives(context_of(request), tenant_id, chosen)
    return JSONResponse({"tenant_id": str(tenant_id), "redriven": [_view(i) for i in targets]}, status_code=202)


async def queue_redrives(ctx: AppContext, tenant_id: uuid.UUID, chosen: list[Incident]) -> list[Incident]:
    """Queue a `redrive` intent for each incident's row (the relay signals its lifecycle); the incidents queued."""
    targets = [i for i in chosen if i.table_name and i.row_id]
    async with ctx.sessions() as session, session.begin():
        await outbox.add(session, [outbox.intent_values(tenant_id, str(i.table_name), i.row_id, "redrive")
                                   for i in targets if i.row_id is not None])
    relay = ctx.extras.get("relay")
    if relay is not None:
        relay.nudge()
    return targets


@document(responses={202: Redriven}, auth="operator",
          errors={404: "No such tenant or incident", 409: "The incident is already resolved"})
async def redrive_one(request: Request) -> JSONResponse:
    """Retry one incident's CRM write now."""
    tenant_id, incident_id = _uuid(request, "tenant_id"), _uuid(request, "incident_id")
    require_operator(request, tenant_id)
    async with context_of(request).sessions() as session:
        incident = await incidents.get_for_tenant(session, tenant_id, incident_id)
    if incident is None:
        raise Problem(404, "not-found", "No such incident.")
    if incident.status != "open":
        raise Problem(409, "incident-resolved", "This incident is already resolved; the record is in the CRM.")
    return await _queue_redrives(request, tenant_id, [incident])


@document(responses={202: Redriven}, auth="operator", errors={404: "No such tenant (for this operator)"})
async def redrive_all(request: Request) -> JSONResponse:
    """Retry the CRM writes of every open incident of the tenant now."""
    tenant_id = _uuid(request, "tenant_id")
    require_operator(request, tenant_id)
    async with context_of(request).sessions() as session:
        chosen = await incidents.list_for_tenant(session, tenant_id, status="open", limit=1000)
    return await _queue_redrives(request, tenant_id, chosen)


PREFIX = "/api/tenants/{tenant_id}/incidents"
routes = [
    Route(PREFIX, list_incidents, methods=["GET"]),
    Route(f"{PREFIX}/redrive", redrive_all, methods=["POST"]),
    Route(f"{PREFIX}/{{incident_id}}/redrive", redrive_one, methods=["POST"]),
]
