"""The agent's CRM tools as an MCP server (the `mcp` package, Streamable HTTP), mounted at `/mcp` in the API app.

Agent JWT on every request (`Authorization: Bearer …`), the tenant from the token as on the tool routes. Tools
are the tool routes' tools with the tenant's schemas (api/tool_schema.py) and go through the same code
(`Tool.invoke`): same limits, same field mapping, same answers. A bad argument is an `isError` result carrying
the same problem body the HTTP route answers (each field, why, and what would do), so the agent can repair it.

Stateless, JSON responses: any API process answers any request (no session affinity), and the server needs no
long-lived task group, so it runs per request inside whatever serves the API (also without its lifespan).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from api.auth import Principal, require_agent
from api.context import context_of
from api.crm import request_id
from api.errors import Problem, problem_response
from api.openapi import document
from api.routes.tools import TOOLS_BY_NAME
from api.tool_schema import tenant_mapping, tool_schemas

log = logging.getLogger(__name__)

PATH = "/mcp"


def _request(ctx: ServerRequestContext[Any, Any]) -> Request:
    request = ctx.request
    if not isinstance(request, Request):  # only reachable through the mounted HTTP app
        raise RuntimeError("the MCP server is served over HTTP only")
    return request


async def list_tools(ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
                     ) -> types.ListToolsResult:
    request = _request(ctx)
    tenant_id = require_agent(request).require_tenant()
    found = await tenant_mapping(context_of(request).sessions, tenant_id)
    if found is None:
        return types.ListToolsResult(tools=[])
    catalog = tool_schemas(*found)
    return types.ListToolsResult(tools=[
        types.Tool(name=t["name"], description=t["description"], input_schema=t["input_schema"],
                   meta={"crm-sor/schema-version": catalog["version"]})
        for t in catalog["tools"]])


def _result(body: dict[str, Any], *, error: bool) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=json.dumps(body))], structured_content=body,
                                is_error=error)


async def call_tool(ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
                    ) -> types.CallToolResult:
    request = _request(ctx)
    principal: Principal = require_agent(request)
    tool = TOOLS_BY_NAME.get(params.name)
    if tool is None:
        return _result({"title": "No such tool.", "tools": sorted(TOOLS_BY_NAME)}, error=True)
    try:
        answer: BaseModel = await tool.invoke(request, principal, params.arguments or {}, request_id(request))
    except Problem as problem:
        return _result(json.loads(bytes(problem_response(problem).body)), error=True)
    except ValidationError as exc:
        errors = [{"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return _result({"title": "Invalid arguments.", "errors": errors}, error=True)
    body = answer.model_dump(mode="json")
    return _result(body, error=body.get("ok") is False)


SERVER: Server[Any] = Server("crm-sor", version="1", on_list_tools=list_tools, on_call_tool=call_tool,
                             instructions="The business's CRM. Tool schemas are this tenant's own fields.")


class McpEndpoint:
    """The Streamable HTTP endpoint as a plain ASGI app on `/mcp` (a Route, so `/mcp` itself answers)."""

    __name__ = "mcp"
    __doc__ = """MCP server (Streamable HTTP, JSON-RPC): the agent tools with this tenant's schemas.

    Use an MCP client (tools/list, tools/call); answers are JSON (stateless, no session id)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Authenticate, then serve one request with a fresh stateless session manager."""
        try:
            require_agent(Request(scope))
        except Problem as problem:
            await problem_response(problem, PATH)(scope, receive, send)
            return
        manager = StreamableHTTPSessionManager(app=SERVER, stateless=True, json_response=True)
        async with manager.run():
            await manager.handle_request(scope, receive, send)


endpoint = document(auth="agent", errors={401: "No or bad agent token", 406: "The client must accept JSON",
                                          405: "Only POST in stateless mode"})(McpEndpoint())
routes = [Route(PATH, endpoint, methods=["POST", "GET", "DELETE"])]
