"""The operator console's routes, mounted by api/app.py (ROUTE_MODULES) under /console.

HTML pages, not the API: kept out of /openapi.json (`include_in_schema=False`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from api.console import connect, erasure, incidents, mapping, overview, signin, sync, webhooks
from api.console.web import HERE

T = "/console/t/{tenant_id:uuid}"


def get(path: str, endpoint: Callable[[Request], Awaitable[Response]]) -> Route:
    return Route(path, endpoint, methods=["GET"], include_in_schema=False)


def post(path: str, endpoint: Callable[[Request], Awaitable[Response]]) -> Route:
    return Route(path, endpoint, methods=["POST"], include_in_schema=False)


routes: list[BaseRoute] = [
    get("/console/login", signin.login_form),
    post("/console/login", signin.login),
    post("/console/logout", signin.logout),
    get("/console/", overview.tenants),
    get(f"{T}/", overview.overview),
    get(f"{T}/connect", connect.connect_page),
    post(f"{T}/connect/oauth", connect.oauth_start),
    post(f"{T}/connect/credentials", connect.credentials),
    post(f"{T}/connect/test", connect.test_connection),
    get(f"{T}/mapping", mapping.mapping_page),
    post(f"{T}/mapping/override", mapping.save_override),
    post(f"{T}/mapping/remove", mapping.remove),
    post(f"{T}/mapping/validate", mapping.check_against_crm),
    post(f"{T}/mapping/preview", mapping.preview),
    post(f"{T}/mapping/install", mapping.install),
    get(f"{T}/sync", sync.sync_page),
    get(f"{T}/incidents", incidents.incidents_page),
    get(f"{T}/incidents/redrive", incidents.confirm_redrive),
    post(f"{T}/incidents/redrive", incidents.redrive),
    get(f"{T}/incidents/{{incident_id:uuid}}/redrive", incidents.confirm_redrive),
    post(f"{T}/incidents/{{incident_id:uuid}}/redrive", incidents.redrive),
    get(f"{T}/erasure", erasure.erasure_page),
    post(f"{T}/erasure", erasure.start),
    get(f"{T}/erasure/{{request_id:uuid}}", erasure.request_page),
    post(f"{T}/erasure/{{request_id:uuid}}/retry", erasure.retry),
    get(f"{T}/erasure/{{request_id:uuid}}/outcomes/{{outcome_id:uuid}}/resolve", erasure.confirm_manual_deletion),
    post(f"{T}/erasure/{{request_id:uuid}}/outcomes/{{outcome_id:uuid}}/resolve", erasure.record_manual_deletion),
    get(f"{T}/webhooks", webhooks.webhooks_page),
    Mount("/console/static", app=StaticFiles(directory=HERE / "static"), name="console-static"),
]
