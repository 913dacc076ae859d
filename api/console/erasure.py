"""The erasure page: start a right-to-erasure request, follow its per-record outcomes, retry failed steps, and
resolve a `divergent` record by recording that it was deleted by hand at the provider.

Every action calls the service functions of `api/routes/forget.py`, the JSON API's own.
"""

from __future__ import annotations

import uuid

from pydantic import ValidationError
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from api.console.web import Operator, form_of, message_of, page, redirect, render, temporal_ui_url
from api.context import context_of
from api.errors import Problem
from api.routes.forget import ForgetBody, erasure_status, resolve_divergent, retry_erasure, start_erasure
from store import erasure_requests
from store.models import ErasureOutcome, Tenant

IDENTIFIERS = ("phone", "email", "external_id", "customer_id")
NOTICES = {"started": "Erasure started. Outcomes appear below as each CRM record is handled.",
           "attached": "An erasure of this person was already running; this is it.",
           "resolved": "Recorded: the record was deleted by hand. It now counts as deleted.",
           "retried": "Retrying the failed steps."}


async def _list(request: Request, *, status: int = 200, error: str | None = None,
                kept: dict[str, str] | None = None) -> Response:
    ctx = context_of(request)
    tenant: Tenant = request.state.tenant
    async with ctx.sessions() as session:
        requests = await erasure_requests.list_for_tenant(session, tenant.id)
    return render(request, "erasure.html", status, tenant=tenant, requests=requests, kept=kept or {}, error=error,
                  active="Erasure", temporal_url=temporal_ui_url(ctx, tenant.id))


@page
async def erasure_page(request: Request, operator: Operator) -> Response:
    return await _list(request)


@page
async def start(request: Request, operator: Operator) -> Response:
    ctx = context_of(request)
    tenant: Tenant = request.state.tenant
    posted = form_of(request)
    kept = {name: posted.get(name, "") for name in IDENTIFIERS}  # shown back to the operator who typed them
    try:
        body = ForgetBody.model_validate({k: v.strip() for k, v in kept.items() if v.strip()})
        accepted = await start_erasure(ctx, operator.principal, tenant.id, body)
    except (ValidationError, Problem) as exc:
        status = exc.status if isinstance(exc, Problem) else 422
        return await _list(request, status=status, error=message_of(exc), kept=kept)
    notice = "attached" if accepted.attached else "started"
    return redirect(f"/console/t/{tenant.id}/erasure/{accepted.request_id}?done={notice}")


@page
async def request_page(request: Request, operator: Operator) -> Response:
    ctx = context_of(request)
    tenant: Tenant = request.state.tenant
    view = await erasure_status(ctx, tenant.id, request.path_params["request_id"])
    template = "erasure_outcomes.html" if request.headers.get("hx-request") else "erasure_request.html"
    return render(request, template, tenant=tenant, view=view, active="Erasure",
                  notice=NOTICES.get(request.query_params.get("done", "")),
                  temporal_url=temporal_ui_url(ctx, tenant.id), refresh=view.status == "running")


async def _outcome(request: Request, tenant: Tenant) -> ErasureOutcome | None:
    await erasure_status(context_of(request), tenant.id, request.path_params["request_id"])  # 404 if not theirs
    async with context_of(request).sessions() as session:
        return (await session.execute(select(ErasureOutcome).where(
            ErasureOutcome.id == request.path_params["outcome_id"],
            ErasureOutcome.request_id == request.path_params["request_id"]))).scalar()


@page
async def confirm_manual_deletion(request: Request, operator: Operator) -> Response:
    tenant: Tenant = request.state.tenant
    outcome = await _outcome(request, tenant)
    if outcome is None:
        return render(request, "error.html", 404, message="No such outcome.")
    return render(request, "manual_deletion.html", tenant=tenant, outcome=outcome, active="Erasure",
                  request_id=request.path_params["request_id"],
                  temporal_url=temporal_ui_url(context_of(request), tenant.id))


@page
async def record_manual_deletion(request: Request, operator: Operator) -> Response:
    tenant: Tenant = request.state.tenant
    request_id: uuid.UUID = request.path_params["request_id"]
    if form_of(request).get("confirm") != "on":
        outcome = await _outcome(request, tenant)
        return render(request, "manual_deletion.html", 422, tenant=tenant, outcome=outcome, active="Erasure",
                      request_id=request_id, temporal_url=temporal_ui_url(context_of(request), tenant.id),
                      error="Tick the box to confirm that the record was deleted at the provider.")
    await resolve_divergent(context_of(request), operator.principal, tenant.id, request_id,
                            request.path_params["outcome_id"])
    return redirect(f"/console/t/{tenant.id}/erasure/{request_id}?done=resolved")


@page
async def retry(request: Request, operator: Operator) -> Response:
    tenant: Tenant = request.state.tenant
    request_id: uuid.UUID = request.path_params["request_id"]
    await retry_erasure(context_of(request), operator.principal, tenant.id, request_id)
    return redirect(f"/console/t/{tenant.id}/erasure/{request_id}?done=retried")
