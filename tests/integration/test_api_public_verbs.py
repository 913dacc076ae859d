"""POST /v1/crm/{lookup,search,update-record,list-recent}: scopes, the tools' answers, limits and failures,
against the HubSpot sandbox over the real store and Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.app import all_routes
from api.openapi import build_spec
from settings import RateLimitSettings, Settings
from tests.unit.api.support import (
    SandboxProvider,
    agent_headers,
    client_for,
    context,
    key_headers,
    make_key,
    make_tenant,
)

pytestmark = pytest.mark.integration

READS = {"/v1/crm/lookup": {"phone": "+1 (415) 555-0100"},
         "/v1/crm/search": {"object": "customer", "query": "Ortiz"},
         "/v1/crm/list-recent": {"object": "customer"}}
SAME_TOOL = {"/v1/crm/lookup": "crm_lookup_customer", "/v1/crm/search": "crm_search_records",
             "/v1/crm/list-recent": "crm_list_recent"}


@pytest.fixture
def provider() -> SandboxProvider:
    return SandboxProvider()


@pytest_asyncio.fixture(loop_scope="session")
async def api(settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
              provider: SandboxProvider) -> AsyncIterator[httpx.AsyncClient]:
    # Exact Redis counts (a loaded machine must not fail open): the per-tenant budget is asserted below.
    limited = settings.model_copy(update={"rate_limits": RateLimitSettings(redis_timeout_seconds=2.0)})
    async with client_for(context(limited, engine, sessions, provider)) as client:
        yield client


async def seeded(sessions: async_sessionmaker[AsyncSession], provider: SandboxProvider) -> tuple[uuid.UUID, str]:
    tenant = await make_tenant(sessions)
    state = provider.connect(tenant)
    record = state.add("contacts", {"firstname": "Ana", "lastname": "Ortiz", "phone": "+14155550100",
                                    "email": "ana@example.com"})
    return tenant, record.id


async def test_read_verbs_answer_like_the_tools_with_crm_read(
        api: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        provider: SandboxProvider) -> None:
    tenant, contact = await seeded(sessions, provider)
    key = await make_key(sessions, tenant, ("crm:read",))
    for path, body in READS.items():
        answer = await api.post(path, json=body, headers=key_headers(key))
        tool = await api.post(f"/api/tools/{SAME_TOOL[path]}", json=body, headers=agent_headers(settings, tenant))
        assert answer.status_code == 200 and answer.json() == tool.json(), path
        assert answer.json()["ok"] is True
    looked_up = (await api.post("/v1/crm/lookup", json=READS["/v1/crm/lookup"], headers=key_headers(key))).json()
    assert looked_up["found"] is True and looked_up["customer"]["external_id"] == contact
    # The reads went to the CRM as the tool calls do, and were audited under the key, not as the agent.
    assert any(actor.id == f"api_key:{key.id}" and actor.purpose == "v1.crm_lookup_customer"
               for _, actor in provider.actors)


async def test_update_record_needs_crm_write(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], provider: SandboxProvider) -> None:
    tenant, contact = await seeded(sessions, provider)
    reader = await make_key(sessions, tenant, ("crm:read",))
    writer = await make_key(sessions, tenant, ("crm:write",))
    body = {"object": "customer", "external_id": contact, "fields": {"city": "Quito"}}
    refused = await api.post("/v1/crm/update-record", json=body, headers=key_headers(reader))
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
    assert provider.state(tenant).records["contacts"][contact].properties.get("city") is None
    done = await api.post("/v1/crm/update-record", json=body, headers=key_headers(writer))
    assert done.status_code == 200 and done.json()["ok"] is True
    assert provider.state(tenant).records["contacts"][contact].properties["city"] == "Quito"
    # crm:write alone does not read.
    assert (await api.post("/v1/crm/search", json=READS["/v1/crm/search"],
                           headers=key_headers(writer))).status_code == 403


async def test_crm_failures_are_problems_with_the_tools_fallback(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], provider: SandboxProvider) -> None:
    tenant, contact = await seeded(sessions, provider)
    key = await make_key(sessions, tenant, ("crm:read", "crm:write"))
    provider.state(tenant).knobs.limit_next = 1
    limited = await api.post("/v1/crm/search", json=READS["/v1/crm/search"], headers=key_headers(key))
    assert limited.status_code == 503 and limited.headers["content-type"] == "application/problem+json"
    assert limited.json()["reason"] == "crm_rate_limited" and limited.json()["suggested_fallback"] == "retry_later"
    assert int(limited.headers["Retry-After"]) >= 1
    missing = await api.post("/v1/crm/update-record", headers=key_headers(key),
                             json={"object": "customer", "external_id": "999999999", "fields": {"city": "X"}})
    assert missing.status_code == 404 and missing.json()["suggested_fallback"] == "confirm_details"
    unconnected = await make_tenant(sessions)
    other = await make_key(sessions, unconnected, ("crm:read",))
    answer = await api.post("/v1/crm/lookup", json=READS["/v1/crm/lookup"], headers=key_headers(other))
    assert answer.status_code == 409 and answer.json()["reason"] == "crm_not_connected"


async def test_v1_and_the_agent_share_the_per_tenant_budget(
        api: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        provider: SandboxProvider) -> None:
    tenant, _ = await seeded(sessions, provider)
    key = await make_key(sessions, tenant, ("crm:read",))
    body = READS["/v1/crm/list-recent"]
    for n in range(50):  # per_tenant_tool is 50/minute per (tenant, verb)
        if n % 2:
            assert (await api.post("/v1/crm/list-recent", json=body, headers=key_headers(key))).status_code == 200
        else:
            response = await api.post("/api/tools/crm_list_recent", json=body, headers=agent_headers(settings, tenant))
            assert response.status_code == 200
    refused = await api.post("/v1/crm/list-recent", json=body, headers=key_headers(key))
    assert refused.status_code == 429 and refused.json()["type"].endswith("/rate-limited")
    assert int(refused.headers["Retry-After"]) >= 1


def test_every_verb_is_documented_with_its_key_and_answers() -> None:
    spec = build_spec(all_routes())
    for path in ["/v1/crm/lookup", "/v1/crm/search", "/v1/crm/update-record", "/v1/crm/list-recent"]:
        operation = spec["paths"][path]["post"]
        assert operation["security"] == [{"api_key": []}], path
        assert "200" in operation["responses"] and "403" in operation["responses"], path
        assert "requestBody" in operation, path
    assert "crm:read" in spec["paths"]["/v1/crm/search"]["post"]["description"]
