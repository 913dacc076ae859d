"""The operator console's routes, mounted by api/app.py (ROUTE_MODULES) under /console."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from api.console import connect, erasure, incidents, overview, signin, sync, webhooks
from api.console.web import HERE

T = "/console/t/{tenant_id:uuid}"

routes: list[BaseRoute] = [
    Route("/console/login", signin.login_form, methods=["GET"]),
    Route("/console/login", signin.login, methods=["POST"]),
    Route("/console/logout", signin.logout, methods=["POST"]),
    Route("/console/", overview.tenants, methods=["GET"]),
    Route(f"{T}/", overview.overview, methods=["GET"]),
    Route(f"{T}/connect", connect.connect_page, methods=["GET"]),
    Route(f"{T}/connect/oauth", connect.oauth_start, methods=["POST"]),
    Route(f"{T}/connect/credentials", connect.credentials, methods=["POST"]),
    Route(f"{T}/connect/test", connect.test_connection, methods=["POST"]),
    # The field-mapping studio (issue 15) replaces this placeholder page.
    Route(f"{T}/mapping", webhooks.mapping_page, methods=["GET"]),
    Route(f"{T}/sync", sync.sync_page, methods=["GET"]),
    Route(f"{T}/incidents", incidents.incidents_page, methods=["GET"]),
    Route(f"{T}/incidents/redrive", incidents.confirm_redrive, methods=["GET"]),
    Route(f"{T}/incidents/redrive", incidents.redrive, methods=["POST"]),
    Route(f"{T}/incidents/{{incident_id:uuid}}/redrive", incidents.confirm_redrive, methods=["GET"]),
    Route(f"{T}/incidents/{{incident_id:uuid}}/redrive", incidents.redrive, methods=["POST"]),
    Route(f"{T}/erasure", erasure.erasure_page, methods=["GET"]),
    Route(f"{T}/erasure", erasure.start, methods=["POST"]),
    Route(f"{T}/erasure/{{request_id:uuid}}", erasure.request_page, methods=["GET"]),
    Route(f"{T}/erasure/{{request_id:uuid}}/retry", erasure.retry, methods=["POST"]),
    Route(f"{T}/erasure/{{request_id:uuid}}/outcomes/{{outcome_id:uuid}}/resolve", erasure.confirm_manual_deletion,
          methods=["GET"]),
    Route(f"{T}/erasure/{{request_id:uuid}}/outcomes/{{outcome_id:uuid}}/resolve", erasure.record_manual_deletion,
          methods=["POST"]),
    Route(f"{T}/webhooks", webhooks.webhooks_page, methods=["GET"]),
    Mount("/console/static", app=StaticFiles(directory=HERE / "static"), name="console-static"),
]
