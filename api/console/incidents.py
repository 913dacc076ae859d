"""The incidents page: open and resolved `crm_sync_failure` incidents, and redrive after a confirmation.

Reads with `store.incidents` and queues with `api.routes.incidents.queue_redrives`, exactly as the JSON routes;
the lifecycle resolves an incident once its CRM write succeeds, and the page refreshes itself until then.
"""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import Response

from api.console.web import Operator, page, redirect, render, temporal_ui_url
from api.context import context_of
from api.routes.incidents import queue_redrives
from store import incidents
from store.models import Tenant

FILTERS = {"open": "open", "resolved": "resolved", "all": None}
NOTICES = {"one": "Redrive queued: the record's CRM write is being retried now. This page refreshes until it "
                  "resolves.",
           "all": "Redrive queued for every open incident. This page refreshes until they resolve."}


@page
async def incidents_page(request: Request, operator: Operator) -> Response:
    ctx = context_of(request)
    tenant: Tenant = request.state.tenant
    shown = request.query_params.get("status", "open")
    if shown not in FILTERS:
        shown = "open"
    async with ctx.sessions() as session:
        rows = await incidents.list_for_tenant(session, tenant.id, status=FILTERS[shown], limit=200)
        still_open = await incidents.list_for_tenant(session, tenant.id, status="open", limit=1)
    redriven = request.query_params.get("redriven")
    template = "incidents_table.html" if request.headers.get("hx-request") else "incidents.html"
    return render(request, template, tenant=tenant, rows=rows, shown=shown, active="Incidents",
                  temporal_url=temporal_ui_url(ctx, tenant.id), notice=NOTICES.get(redriven or ""),
                  refresh=bool(redriven) and bool(still_open), redriven=redriven or "")


@page
async def confirm_redrive(request: Request, operator: Operator) -> Response:
    ctx = context_of(request)
    tenant: Tenant = request.state.tenant
    incident_id = request.path_params.get("incident_id")
    chosen = None
    if incident_id is not None:
        async with ctx.sessions() as session:
            chosen = await incidents.get_for_tenant(session, tenant.id, incident_id)
        if chosen is None:
            return render(request, "error.html", 404, message="No such incident.")
        if chosen.status != "open":
            return render(request, "error.html", 409,
                          message="This incident is already resolved; the record is in the CRM.")
    return render(request, "redrive_confirm.html", tenant=tenant, incident=chosen, active="Incidents",
                  temporal_url=temporal_ui_url(ctx, tenant.id))


@page
async def redrive(request: Request, operator: Operator) -> Response:
    ctx = context_of(request)
    tenant: Tenant = request.state.tenant
    incident_id: uuid.UUID | None = request.path_params.get("incident_id")
    async with ctx.sessions() as session:
        if incident_id is None:
            chosen = await incidents.list_for_tenant(session, tenant.id, status="open", limit=1000)
        else:
            found = await incidents.get_for_tenant(session, tenant.id, incident_id)
            if found is None:
                return render(request, "error.html", 404, message="No such incident.")
            if found.status != "open":
                return render(request, "error.html", 409,
                              message="This incident is already resolved; the record is in the CRM.")
            chosen = [found]
    await queue_redrives(ctx, tenant.id, chosen)
    return redirect(f"/console/t/{tenant.id}/incidents?redriven={'one' if incident_id else 'all'}")
