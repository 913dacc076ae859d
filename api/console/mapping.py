"""The field-mapping page: its place in the console, until the mapping engine and its operator routes (issue 15)
land. Then this page shows the tenant's introspected CRM fields beside our canonical keys, with edit, validate,
preview of a sample record and picklists — calling the mapping routes' service functions, like the other pages.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from api.console.web import Operator, page, render, temporal_ui_url
from api.context import context_of


@page
async def mapping_page(request: Request, operator: Operator) -> Response:
    ctx = context_of(request)
    tenant = request.state.tenant
    return render(request, "mapping.html", tenant=tenant, active="Field mapping",
                  temporal_url=temporal_ui_url(ctx, tenant.id))
