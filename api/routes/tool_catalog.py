"""`GET /api/tools/schema`: this tenant's agent tools as JSON Schema (api/tool_schema.py), versioned.

Agent JWT; the tenant from the token. The version is also the ETag: an agent that sends it back in
`If-None-Match` gets 304 until the tenant's mapping or introspected schema changes.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.auth import require_agent
from api.context import context_of
from api.errors import Problem
from api.openapi import document
from api.tool_schema import tenant_mapping, tool_schemas


class ToolSchema(BaseModel):
    name: str
    description: str
    input_schema: dict[str, Any]


class ToolCatalog(BaseModel):
    """Every agent tool with this tenant's fields; `version` changes with the mapping (cache by it)."""

    version: str
    provider: str
    tools: list[ToolSchema]


@document(responses={200: ToolCatalog}, auth="agent", errors={404: "The token's tenant does not exist"})
async def schema(request: Request) -> Response:
    """The agent tools as JSON Schema for this tenant: mapped fields, CRM labels, types, picklists, required."""
    tenant_id = require_agent(request).require_tenant()
    found = await tenant_mapping(context_of(request).sessions, tenant_id)
    if found is None:
        raise Problem(404, "not-found", "No such tenant.")
    catalog = tool_schemas(*found)
    etag = f'"{catalog["version"]}"'
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return JSONResponse(catalog, headers=headers)


routes = [Route("/api/tools/schema", schema, methods=["GET"])]
