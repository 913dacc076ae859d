"""The MCP server through the `mcp` package's own client (Streamable HTTP to the API app): two tenants on
different CRMs see their own tool schemas, and lookup and create run end to end on the sandboxes. Plus
`GET /api/tools/schema`, which says the same thing over plain HTTP."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest_asyncio
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.app import create_app
from api.auth import mint_token
from api.context import AppContext
from settings import Settings
from store.field_mapping import put_override
from tests.support.sandbox_provider import SandboxDriverProvider
from tests.support.tenants import create_tenant
from tests.unit.api.sandbox_drivers import drivers  # noqa: F401 (pytest fixtures, found by import)
from tests.unit.api.support import agent_headers, client_for, context
from tests.unit.api.test_tool_mapping import _budget_property


@pytest_asyncio.fixture(loop_scope="session")
async def ctx(settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
              drivers: SandboxDriverProvider) -> AsyncIterator[AppContext]:
    built = context(settings, engine, sessions, drivers)
    yield built
    limiter = built.extras.pop("ratelimiter", None)
    if limiter is not None:
        await limiter.aclose()


@asynccontextmanager
async def mcp_client(ctx: AppContext, headers: dict[str, str]) -> AsyncIterator[Client]:
    """The mcp package's client, speaking Streamable HTTP to the API app over an in-process ASGI transport."""
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=create_app(context=ctx)), headers=headers,
                              base_url="http://api")
    async with http, Client(streamable_http_client("http://api/mcp", http_client=http)) as client:
        yield client


def _fields_of(tools: dict[str, Any], obj: str) -> dict[str, Any]:
    (variant,) = [v for v in tools["crm_create_record"]["oneOf"] if v["properties"]["object"]["const"] == obj]
    fields: dict[str, Any] = variant["properties"]["fields"]
    return fields


async def _operator_validate(ctx: AppContext, settings: Settings, tenant: uuid.UUID) -> None:
    token = mint_token(settings, subject="op", role="operator", tenant_id=tenant)
    async with client_for(ctx) as api:
        answer = await api.post(f"/api/operator/tenants/{tenant}/mapping/validate",
                                headers={"authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text


async def test_two_tenants_on_different_crms_see_their_own_tools_and_call_them(
        ctx: AppContext, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        drivers: SandboxDriverProvider) -> None:
    _budget_property(drivers)
    hubspot = await create_tenant(sessions, provider="hubspot")
    salesforce = await create_tenant(sessions, provider="salesforce")
    async with sessions.begin() as session:
        await put_override(session, hubspot, "write", "customer.budget_max", "budget_aed")
        await put_override(session, hubspot, "read", "customer.budget_max", "budget_aed")
    for tenant in (hubspot, salesforce):
        await _operator_validate(ctx, settings, tenant)

    listed: dict[uuid.UUID, dict[str, Any]] = {}
    for tenant in (hubspot, salesforce):
        async with mcp_client(ctx, agent_headers(settings, tenant)) as client:
            result = await client.list_tools()
            listed[tenant] = {t.name: t.input_schema for t in result.tools}
    assert set(listed[hubspot]) == set(listed[salesforce]) == {
        "crm_lookup_customer", "crm_search_records", "crm_create_record", "crm_update_record", "crm_list_recent"}
    hs_customer, sf_customer = _fields_of(listed[hubspot], "customer"), _fields_of(listed[salesforce], "customer")
    assert hs_customer["properties"]["budget_max"]["type"] == "number"
    assert "Budget (AED)" in hs_customer["properties"]["budget_max"]["description"]
    assert "budget_max" not in sf_customer["properties"]
    assert sf_customer.get("required") == ["last_name"]  # Salesforce's Contact.LastName, from its describe
    hs_lead_status = _fields_of(listed[hubspot], "lead")["properties"]["status"]
    assert "NEW" in hs_lead_status["enum"]  # the portal's picklist
    assert listed[hubspot] != listed[salesforce]

    async with mcp_client(ctx, agent_headers(settings, hubspot)) as client:
        created = await client.call_tool("crm_create_record", {
            "object": "customer", "idempotency_key": "mcp-1",
            "fields": {"first_name": "Lina", "last_name": "Saab", "email": "lina@example.com", "budget_max": 1200000}})
        assert created.is_error is False, created.structured_content
        external_id = created.structured_content["external_id"]
        assert drivers.state("hubspot").records["contacts"][external_id].properties["budget_aed"] == "1200000"
        found = await client.call_tool("crm_lookup_customer", {"email": "lina@example.com"})
        assert found.structured_content["customer"]["external_id"] == external_id
        assert found.structured_content["customer"]["fields"]["customer.budget_max"] == 1200000  # typed
        refused = await client.call_tool("crm_create_record", {
            "object": "lead", "fields": {"last_name": "Saab", "status": "scorching"}})
        assert refused.is_error is True
        assert refused.structured_content["fields"][0]["allowed"][0] == "NEW"

    async with mcp_client(ctx, agent_headers(settings, salesforce)) as client:
        created = await client.call_tool("crm_create_record", {
            "object": "customer", "idempotency_key": "mcp-2",
            "fields": {"last_name": "Haddad", "phone": "+14155550123"}})
        assert created.is_error is False, created.structured_content
        found = await client.call_tool("crm_lookup_customer", {"phone": "(415) 555-0123"})
        assert found.structured_content["found"] is True
        assert found.structured_content["customer"]["external_id"] == created.structured_content["external_id"]


async def test_mcp_needs_an_agent_token(ctx: AppContext) -> None:
    async with client_for(ctx) as api:
        answer = await api.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert answer.status_code == 401


async def test_tool_schema_route_is_versioned_with_the_mapping(
        ctx: AppContext, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = await create_tenant(sessions)
    headers = agent_headers(settings, tenant)
    async with client_for(ctx) as api:
        first = await api.get("/api/tools/schema", headers=headers)
        assert first.status_code == 200 and first.json()["provider"] == "hubspot"
        again = await api.get("/api/tools/schema", headers=headers | {"if-none-match": first.headers["etag"]})
        assert again.status_code == 304
        async with sessions.begin() as session:
            await put_override(session, tenant, "write", "lead.budget_max", "budget_aed")
        changed = await api.get("/api/tools/schema", headers=headers | {"if-none-match": first.headers["etag"]})
        assert changed.status_code == 200 and changed.json()["version"] != first.json()["version"]
        lead = _fields_of({t["name"]: t["input_schema"] for t in changed.json()["tools"]}, "lead")
        assert "budget_max" in lead["properties"] and lead["additionalProperties"] is True
