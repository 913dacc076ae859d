"""Operator routes: a tenant's `crm_sync_failure` incidents, and redrive (retry their rows' CRM writes now).

An incident is one per (tenant, failure kind) with the number of rows it affects. A redrive makes every unsynced
row of that kind due at once and queues a `redrive` intent in the outbox — in one transaction, accepted even
while Temporal is away — which the relay delivers as the tenant mirror's `redrive` signal (signal-with-start:
a mirror that is not running is started). The incident resolves once none of its rows is stuck.
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
from api.lifecycle import mirror_workflow_id
from api.openapi import document
from store import incidents, outbox
from store.models import Incident

STATUSES = ("open", "resolved")


class IncidentView(BaseModel):
    """One incident: ids, kind, state and an error code (never a CRM message)."""

    id: str
    kind: str
    failure_kind: str | None  # the error code its rows share: unavailable, auth_error, unmapped_fields, …
    status: str
    row_count: int  # rows unsynced 24 h after insert with this failure, as of the mirror's last look
    last_error: str | None
    attempts: int  # the most CRM attempts one of its rows took
    opened_at: str
    resolved_at: str | None
    workflow_id: str  # the tenant's mirror


class IncidentList(BaseModel):
    tenant_id: str
    incidents: list[IncidentView]


class Redriven(BaseModel):
    """The incidents whose rows were made due now, and how many rows that was."""

    tenant_id: str
    redriven: list[IncidentView]
    rows: int


def _uuid(request: Request, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(request.path_params[name])
    except ValueError:
        raise Problem(404, "not-found", f"No such {name.removesuffix('_id')}.") from None


def _view(incident: Incident) -> dict[str, Any]:
    return {"id": str(incident.id), "kind": incident.kind, "failure_kind": incident.failure_kind,
            "status": incident.status, "row_count": incident.row_count, "last_error": incident.last_error,
            "attempts": incident.attempts, "opened_at": incident.opened_at.isoformat(),
            "resolved_at": incident.resolved_at.isoformat() if incident.resolved_at else None,
            "workflow_id": mirror_workflow_id(incident.tenant_id)}


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
    rows = await queue_redrives(context_of(request), tenant_id, chosen)
    return JSONResponse({"tenant_id": str(tenant_id), "redriven": [_view(i) for i in chosen], "rows": rows},
                        status_code=202)


async def queue_redrives(ctx: AppContext, tenant_id: uuid.UUID, chosen: list[Incident]) -> int:
    """Make every unsynced row of each incident due again and queue a `redrive` intent (the relay signals the
    tenant's mirror); the number of rows made due."""
    rows = 0
    async with ctx.sessions() as session, session.begin():
        for incident in chosen:
            rows += await incidents.redrive(session, incident)
        await outbox.add(session, [outbox.intent_values(tenant_id, "incidents", i.id, "redrive") for i in chosen])
    relay = ctx.extras.get("relay")
    if relay is not None:
        relay.nudge()
    return rows


@document(responses={202: Redriven}, auth="operator",
          errors={404: "No such tenant or incident", 409: "The incident is already resolved"})
async def redrive_one(request: Request) -> JSONResponse:
    """Retry every row of one incident now."""
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
    """Retry the rows of every open incident of the tenant now."""
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
