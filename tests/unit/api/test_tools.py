"""Agent tool routes against a real HubSpot sandbox, through the real driver."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth import mint_token
from settings import Settings
from store.models import TenantCrmFieldMapping
from tests.unit.api.support import SandboxProvider, agent_headers

LOOKUP = "/api/tools/crm_lookup_customer"
CREATE = "/api/tools/crm_create_record"


async def test_lookup_finds_the_customer_by_a_differently_formatted_phone(
        api: httpx.AsyncClient, settings: Settings, tenant: uuid.UUID, provider: SandboxProvider) -> None:
    provider.state(tenant).add("contacts", {"firstname": "Ann", "lastname": "Lee", "phone": "+15551234567",
                                            "email": "ann@example.com", "city": "Austin"})
    response = await api.post(LOOKUP, json={"phone": "(555) 123-4567"}, headers=agent_headers(settings, tenant))
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True and body["found"] is True
    assert body["customer"]["name"] == "Ann Lee" and body["customer"]["email"] == "ann@example.com"
    # Provider fields come back under the tenant's canonical keys where the catalog maps them.
    assert body["customer"]["fields"]["customer.city"] == "Austin"


async def test_lookup_that_finds_nothing_is_an_explicit_answer(
        api: httpx.AsyncClient, settings: Settings, tenant: uuid.UUID) -> None:
    response = await api.post(LOOKUP, json={"email": "nobody@example.com"}, headers=agent_headers(settings, tenant))
    assert response.status_code == 200
    assert response.json() == {"ok": True, "found": False, "customer": None, "reason": None}


async def test_create_maps_canonical_keys_and_is_idempotent_per_key(
        api: httpx.AsyncClient, settings: Settings, tenant: uuid.UUID, provider: SandboxProvider) -> None:
    body = {"object": "lead", "fields": {"first_name": "Lou", "lead.last_name": "Park", "email": "lou@example.com"},
            "idempotency_key": "call-1:turn-4", "conversation_id": "conv-1"}
    first = await api.post(CREATE, json=body, headers=agent_headers(settings, tenant))
    again = await api.post(CREATE, json=body, headers=agent_headers(settings, tenant))
    assert first.status_code == again.status_code == 200
    assert first.json()["ok"] is True and first.json()["created"] is True
    assert again.json()["external_id"] == first.json()["external_id"] and again.json()["created"] is False
    contacts = list(provider.state(tenant).records["contacts"].values())
    assert len(contacts) == 1
    assert contacts[0].properties["firstname"] == "Lou" and contacts[0].properties["lastname"] == "Park"


async def test_create_without_key_dedupes_the_same_fields_in_one_conversation(
        api: httpx.AsyncClient, settings: Settings, tenant: uuid.UUID, provider: SandboxProvider) -> None:
    body = {"object": "case", "fields": {"subject": "Leaky tap", "hs_pipeline_stage": "1"}, "conversation_id": "c-9"}
    ids = {(await api.post(CREATE, json=body, headers=agent_headers(settings, tenant))).json()["external_id"]
           for _ in range(2)}
    assert len(ids) == 1 and len(provider.state(tenant).records["tickets"]) == 1


async def test_tenant_field_mapping_overrides_the_driver_catalog(
        api: httpx.AsyncClient, settings: Settings, tenant: uuid.UUID, provider: SandboxProvider,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        session.add(TenantCrmFieldMapping(tenant_id=tenant, canonical_key="lead.message", provider_field="city",
                                          kind="write"))
    response = await api.post(CREATE, json={"object": "lead", "fields": {"last_name": "Kim", "message": "Oslo"}},
                              headers=agent_headers(settings, tenant))
    assert response.json()["ok"] is True
    (contact,) = provider.state(tenant).records["contacts"].values()
    assert contact.properties["city"] == "Oslo" and contact.properties.get("message") is None


async def test_unknown_canonical_key_and_unsupported_object_are_4xx(
        api: httpx.AsyncClient, settings: Settings, tenant: uuid.UUID, provider: SandboxProvider) -> None:
    unknown = await api.post(CREATE, json={"object": "customer", "fields": {"customer.shoe_size": 42}},
                             headers=agent_headers(settings, tenant))
    assert unknown.status_code == 422 and unknown.json()["type"].endswith("/unmapped-fields")
    unsupported = await api.post(CREATE, json={"object": "appointment", "fields": {"x": 1}},
                                 headers=agent_headers(settings, tenant))
    assert unsupported.status_code == 422 and unsupported.json()["type"].endswith("/unsupported-object")
    assert provider.state(tenant).records.get("contacts", {}) == {}


async def test_search_update_and_list_recent(
        api: httpx.AsyncClient, settings: Settings, tenant: uuid.UUID, provider: SandboxProvider) -> None:
    state = provider.state(tenant)
    record = state.add("contacts", {"firstname": "Zed", "lastname": "Quill", "email": "zed@example.com",
                                    "city": "Lima"})
    headers = agent_headers(settings, tenant)
    found = (await api.post("/api/tools/crm_search_records", json={"object": "customer", "query": "Quill"},
                            headers=headers)).json()
    assert found["ok"] is True and found["count"] == 1 and found["records"][0]["external_id"] == record.id
    updated = await api.post("/api/tools/crm_update_record", headers=headers, json={
        "object": "customer", "external_id": record.id, "fields": {"company": "Quill & Co"}})
    assert updated.json()["ok"] is True
    assert record.properties["company"] == "Quill & Co" and record.properties["city"] == "Lima"  # partial
    recent = (await api.post("/api/tools/crm_list_recent", json={"object": "customer"}, headers=headers)).json()
    assert recent["ok"] is True and [r["external_id"] for r in recent["records"]] == [record.id]
    assert recent["records"][0]["fields"]["customer.company"] == "Quill & Co"


async def test_crm_failures_are_structured_answers_never_data(
        api: httpx.AsyncClient, settings: Settings, tenant: uuid.UUID, provider: SandboxProvider) -> None:
    state, headers = provider.state(tenant), agent_headers(settings, tenant)
    state.knobs.fail_next = 1
    down = (await api.post(LOOKUP, json={"phone": "+15550001111"}, headers=headers)).json()
    assert down == {"ok": False, "reason": "crm_unavailable", "retry_after": None,
                    "suggested_fallback": "offer_follow_up", "message": down["message"], "fields": []}
    state.knobs.limit_next, state.knobs.retry_after = 1, "7"
    limited = (await api.post(LOOKUP, json={"phone": "+15550001111"}, headers=headers)).json()
    assert limited["ok"] is False and limited["reason"] == "crm_rate_limited" and limited["retry_after"] == 7
    state.tokens.expire_all()
    refused = (await api.post(LOOKUP, json={"phone": "+15550001111"}, headers=headers)).json()
    assert refused["ok"] is False and refused["reason"] == "crm_auth"
    assert refused["suggested_fallback"] == "offer_follow_up"


async def test_unconnected_tenant_gets_crm_not_connected(api: httpx.AsyncClient, settings: Settings) -> None:
    response = await api.post(LOOKUP, json={"phone": "+15550001111"}, headers=agent_headers(settings, uuid.uuid4()))
    assert response.status_code == 200
    assert response.json()["ok"] is False and response.json()["reason"] == "crm_not_connected"


async def test_driver_is_opened_as_tool_actor_with_request_and_conversation_ids(
        api: httpx.AsyncClient, settings: Settings, tenant: uuid.UUID, provider: SandboxProvider) -> None:
    response = await api.post(LOOKUP, json={"phone": "+15550001111", "conversation_id": "conv-42"},
                              headers=agent_headers(settings, tenant, subject="agent-99") | {"X-Request-ID": "req-1"})
    assert response.headers["X-Request-ID"] == "req-1"
    ((opened_for, actor),) = provider.actors
    assert opened_for == tenant
    assert (actor.type, actor.id, actor.purpose, actor.request_id, actor.conversation_id) == (
        "tool", "agent-99", "crm_lookup_customer", "req-1", "conv-42")


async def test_tenant_comes_from_the_token_never_the_body(
        api: httpx.AsyncClient, settings: Settings, tenant: uuid.UUID, provider: SandboxProvider) -> None:
    other = uuid.uuid4()
    victim = provider.connect(other)
    victim.add("contacts", {"firstname": "Vic", "lastname": "Tim", "email": "vic@example.com"})
    response = await api.post(CREATE, headers=agent_headers(settings, tenant), json={
        "object": "customer", "fields": {"last_name": "Intruder"}, "tenant_id": str(other), "tenant": str(other)})
    assert response.status_code == 422  # an unknown member is refused, as on every route
    assert provider.actors == [] and len(victim.records["contacts"]) == 1
    response = await api.post(CREATE, headers=agent_headers(settings, tenant), json={
        "object": "customer", "fields": {"last_name": "Intruder"}})
    assert response.json()["ok"] is True
    assert [t for t, _ in provider.actors] == [tenant]
    assert len(victim.records["contacts"]) == 1 and len(provider.state(tenant).records["contacts"]) == 1
    peek = await api.post(LOOKUP, json={"email": "vic@example.com"}, headers=agent_headers(settings, tenant))
    assert peek.json()["found"] is False


async def test_credentials_are_checked(api: httpx.AsyncClient, settings: Settings, tenant: uuid.UUID) -> None:
    body = {"phone": "+15550001111"}
    assert (await api.post(LOOKUP, json=body)).status_code == 401
    expired = mint_token(settings, subject="a", role="agent", tenant_id=tenant, ttl=timedelta(seconds=-5))
    response = await api.post(LOOKUP, json=body, headers={"authorization": f"Bearer {expired}"})
    assert response.status_code == 401 and response.json()["type"].endswith("/token-expired")
    forged = mint_token(settings.model_copy(update={"jwt_secret": SecretStr("an-attacker-secret-0123456789abcdef")}),
                        subject="a", role="agent", tenant_id=tenant)
    response = await api.post(LOOKUP, json=body, headers={"authorization": f"Bearer {forged}"})
    assert response.status_code == 401 and response.json()["type"].endswith("/invalid-token")
    operator = mint_token(settings, subject="op", role="operator", tenant_id=tenant)
    response = await api.post(LOOKUP, json=body, headers={"authorization": f"Bearer {operator}"})
    assert response.status_code == 403 and response.json()["type"].endswith("/wrong-role")
