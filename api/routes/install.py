"""Operator routes for the CRM installer (operator JWT; an operator pinned to one tenant sees only it).

- `GET  /api/operator/tenants/{id}/install` — the last report: per object and field, present / created / manual
  (with the exact instruction for an admin), the install state and the tenant's status
- `POST /api/operator/tenants/{id}/install` `{"accept_degraded": bool?}` — run the installer now (it also runs
  at every connect and connection test); `accept_degraded` lets a tenant whose CRM cannot get the fields run
  without exactly-once create, visibly (`state: degraded`, status reason `degraded: …`)

See docs/mapping.md.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api.auth import require_operator
from api.context import AppContext, context_of
from api.crm import classify, driver_provider, failure_problem
from api.errors import Problem, read_json
from api.openapi import document
from drivers.errors import DriverError
from drivers.installer import install
from store import installs
from store.models import Tenant
from vault.connections import Actor, DriverProvider

PATH = "/api/operator/tenants/{tenant_id:uuid}/install"


class InstallBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    accept_degraded: bool = False


class InstallView(BaseModel):
    """`state`: complete | manual_steps (the tenant stays pending) | degraded (active without exactly-once create);
    null before the first run."""

    tenant_id: uuid.UUID
    state: str | None
    report: dict[str, Any] | None
    checked_at: str | None
    tenant_status: str
    tenant_reason: str | None


async def install_view(ctx: AppContext, tenant_id: uuid.UUID) -> dict[str, Any]:
    """The installer's last report and the tenant's status (`InstallView`; 404 when there is no such tenant)."""
    async with ctx.sessions() as session:
        tenant = await session.get(Tenant, tenant_id)
        if tenant is None:
            raise Problem(404, "not-found", "No such tenant.")
        row = await installs.state_of(session, tenant_id)
    return {"tenant_id": str(tenant_id), "state": row.state if row else None, "report": row.report if row else None,
            "checked_at": row.checked_at.isoformat() if row else None, "tenant_status": tenant.status,
            "tenant_reason": tenant.status_reason}


async def run_installer(ctx: AppContext, drivers: DriverProvider, tenant_id: uuid.UUID, actor: Actor,
                        body: InstallBody) -> dict[str, Any]:
    """Run the installer now, keep its report, move the tenant's status accordingly; the new `InstallView`."""
    await install_view(ctx, tenant_id)  # 404 before any CRM call
    try:
        async with drivers.open(tenant_id, actor) as driver:
            report = await install(driver)
    except (LookupError, DriverError) as exc:
        raise failure_problem(classify(exc)) from None
    async with ctx.sessions.begin() as session:
        state = await installs.record(session, tenant_id, report.as_dict(), accept_degraded=body.accept_degraded)
        await installs.apply(session, tenant_id, state)
    return await install_view(ctx, tenant_id)


@document(responses={200: InstallView}, auth="operator", errors={404: "No such tenant (for this operator)"})
async def show(request: Request) -> JSONResponse:
    """The installer's last report for the tenant and what it means for the tenant's status."""
    tenant_id: uuid.UUID = request.path_params["tenant_id"]
    require_operator(request, tenant_id)
    return JSONResponse(await install_view(context_of(request), tenant_id))


@document(request=InstallBody, responses={200: InstallView}, auth="operator",
          errors={404: "No such tenant (for this operator)", 409: "The CRM is not connected",
                  502: "The CRM refused our credentials"})
async def run(request: Request) -> JSONResponse:
    """Create (or check) the idempotency and fingerprint fields in the tenant's CRM now."""
    tenant_id: uuid.UUID = request.path_params["tenant_id"]
    principal = require_operator(request, tenant_id)
    length = request.headers.get("content-length")
    empty = length == "0" or (length is None and "transfer-encoding" not in request.headers)
    body = InstallBody.model_validate({} if empty else await read_json(request, 4_096))
    actor = Actor(type="platform_operator", id=principal.subject, purpose="install CRM fields")
    return JSONResponse(await run_installer(context_of(request), driver_provider(request), tenant_id, actor, body))


routes = [Route(PATH, show, methods=["GET"]), Route(PATH, run, methods=["POST"])]
