"""/openapi.json describes every route the app serves, including routes other modules add."""

from __future__ import annotations

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from api.app import all_routes
from api.openapi import build_spec


async def test_every_route_of_the_app_is_described(api: httpx.AsyncClient) -> None:
    response = await api.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    served = {(path, method.lower()) for path, method in _served()}
    described = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert served == described
    tool = spec["paths"]["/api/tools/crm_create_record"]["post"]
    assert tool["security"] == [{"agent": []}]
    assert tool["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CreateRecordToolRequest"}
    assert tool["responses"]["200"]["content"]["application/json"]["schema"]["oneOf"] == [
        {"$ref": "#/components/schemas/CreateRecordToolResponse"}, {"$ref": "#/components/schemas/ToolFailure"}]
    public = spec["paths"]["/v1/crm/create-record"]["post"]
    assert public["security"] == [{"api_key": []}] and {"201", "409", "422", "429"} <= set(public["responses"])
    request_schema = spec["components"]["schemas"]["CreateRecordRequest"]
    assert set(request_schema["required"]) == {"object", "fields", "idempotency_key"}


def _served() -> set[tuple[str, str]]:
    return {(route.path_format, method) for route in all_routes() if isinstance(route, Route)
            and route.include_in_schema for method in route.methods or () if method != "HEAD"}


async def _incident(request: Request) -> JSONResponse:
    """Show one incident.

    Operators only.
    """
    return JSONResponse({})


def test_undocumented_routes_of_other_modules_still_appear_with_typed_path_parameters() -> None:
    routes = [Mount("/api/operator", routes=[Route("/incidents/{incident_id:uuid}", _incident, methods=["GET"])])]
    spec = build_spec(routes)
    operation = spec["paths"]["/api/operator/incidents/{incident_id}"]["get"]
    assert operation["summary"] == "Show one incident." and operation["description"] == "Operators only."
    assert operation["parameters"] == [{"name": "incident_id", "in": "path", "required": True,
                                        "schema": {"type": "string", "format": "uuid"}}]
    assert "default" in operation["responses"]
    nested = build_spec([Mount("/t/{tenant_id:uuid}", routes=[Route("/incidents/{n:int}", _incident)])])
    parameters = nested["paths"]["/t/{tenant_id}/incidents/{n}"]["get"]["parameters"]
    assert [(p["name"], p["schema"].get("format", p["schema"]["type"])) for p in parameters] == [
        ("tenant_id", "uuid"), ("n", "integer")]
