"""Every answer says exactly what happened: field names in CRM rejections, 422 for unknown members on every
route, an empty PATCH that changes nothing, counts as numbers, and OpenAPI that documents the write routes."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth import mint_token
from settings import Settings
from store.base import utcnow
from store.models import Conversation, MirrorOutbox
from tests.unit.api.support import SandboxProvider, agent_headers, key_headers, make_key

CREATE = "/api/tools/crm_create_record"
CONVERSATION = {"customer": {"name": "Ada Lovelace", "phone": "+1 415 555 0134"}, "channel": "voice",
                "messages": [{"turn_id": "1", "role": "customer", "text": "Hello"},
                             {"turn_id": "2", "role": "agent", "text": "Hi!"},
                             {"turn_id": "3", "role": "customer", "text": "Bye"}]}


async def test_a_case_with_only_a_subject_names_the_field_the_crm_wanted(
        api: httpx.AsyncClient, settings: Settings, tenant: uuid.UUID, sessions: async_sessionmaker[AsyncSession],
        provider: SandboxProvider) -> None:
    answer = (await api.post(CREATE, json={"object": "case", "fields": {"subject": "Leaky tap"}},
                             headers=agent_headers(settings, tenant))).json()
    assert answer["ok"] is False and answer["reason"] == "crm_rejected"
    assert answer["fields"] == [{"field": "hs_pipeline_stage", "code": "required",  # HubSpot's required ticket
                                 "message": "hs_pipeline_stage (required)"}]  # property
    assert "hs_pipeline_stage (required)" in answer["message"] and "Leaky tap" not in answer["message"]

    key = await make_key(sessions, tenant)
    problem = await api.post("/v1/crm/create-record", headers=key_headers(key), json={
        "object": "case", "fields": {"subject": "Leaky tap", "favourite_colour": "teal"}, "idempotency_key": "k-1"})
    assert problem.status_code == 422
    body = problem.json()  # refused before the CRM: the mapping knows no such case field (one problem shape)
    assert body["reason"] == "invalid_fields"
    assert [(f["field"], f["code"]) for f in body["fields"]] == [("case.favourite_colour", "unmapped")]
    assert "teal" not in problem.text and "Leaky tap" not in problem.text  # names, never values


@pytest.mark.parametrize(("path", "body"), [
    ("/api/tools/crm_lookup_customer", {"phone": "+15550001111"}),
    ("/api/tools/crm_create_record", {"object": "customer", "fields": {"last_name": "Lee"}}),
    ("/api/agent/customers", {"name": "Ann Lee", "phone": "+15550001111"}),
    ("/v1/crm/create-record", {"object": "customer", "fields": {"last_name": "Lee"}, "idempotency_key": "k"}),
    ("/v1/crm/lookup", {"phone": "+15550001111"}),
    ("/v1/leads", {"idempotency_key": "k", "fields": {}}),
])
async def test_a_tenant_id_in_the_body_is_a_422_on_every_route(
        api: httpx.AsyncClient, settings: Settings, tenant: uuid.UUID, sessions: async_sessionmaker[AsyncSession],
        path: str, body: dict[str, object]) -> None:
    if path.startswith("/v1/"):
        headers = key_headers(await make_key(sessions, tenant, ("crm:write", "crm:read", "leads:write")))
    else:
        headers = agent_headers(settings, tenant)
    response = await api.post(path, headers=headers, json=body | {"tenant_id": str(uuid.uuid4())})
    assert response.status_code == 422, response.text
    assert "tenant_id" in response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_an_empty_patch_changes_nothing_and_says_so(
        api: httpx.AsyncClient, settings: Settings, tenant: uuid.UUID,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    headers = agent_headers(settings, tenant)
    created = await api.post("/api/agent/conversations", headers=headers, json=CONVERSATION)
    assert created.status_code == 201
    assert created.json()["messages"] == 3  # a count is a number
    row_id = uuid.UUID(created.json()["id"])
    purge_after = utcnow() + timedelta(days=29)
    async with sessions.begin() as session:  # as if the CRM already holds it
        await session.execute(update(Conversation).where(Conversation.id == row_id).values(
            sync_state="synced", synced_at=utcnow(), purge_after=purge_after, crm_external_id="901"))
        intents = await session.scalar(select(func.count()).select_from(MirrorOutbox).where(
            MirrorOutbox.row_id == row_id))

    for body in ({}, {"summary": None}):
        patched = await api.patch(f"/api/agent/conversations/{row_id}", headers=headers, json=body)
        assert patched.status_code == 200, patched.text
        assert patched.json()["changed"] is False and patched.json()["sync_state"] == "synced"
    async with sessions() as session:
        row = await session.get(Conversation, row_id)
        assert row is not None and row.sync_state == "synced" and row.purge_after == purge_after
        assert await session.scalar(select(func.count()).select_from(MirrorOutbox).where(
            MirrorOutbox.row_id == row_id)) == intents  # no new CRM write queued
    customer_id = created.json()["customer_id"]
    for body in ({}, {"fields": {}}, {"name": "Ada Lovelace"}):
        same = await api.patch(f"/api/agent/customers/{customer_id}", headers=headers, json=body)
        assert same.status_code == 200 and same.json()["changed"] is False, (body, same.text)
    changed = await api.patch(f"/api/agent/customers/{customer_id}", headers=headers, json={"name": "Ada King"})
    assert changed.status_code == 202 and changed.json()["changed"] is True  # the control: a real change


async def test_openapi_documents_agent_writes_and_incident_routes_with_bodies_and_security(
        api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    paths = spec["paths"]
    for path, method in [("/api/agent/conversations", "post"), ("/api/agent/conversations/{row_id}", "patch"),
                         ("/api/agent/customers/{row_id}", "patch"), ("/api/agent/leads/{row_id}", "patch"),
                         ("/api/agent/conversations/{row_id}/messages", "post")]:
        operation = paths[path][method]
        assert "requestBody" in operation, (path, method)
        assert operation["security"] == [{"agent": []}], (path, method)
    for method in ("patch",):
        answers = paths["/api/agent/conversations/{row_id}"][method]["responses"]
        assert {"200", "202"} <= set(answers)  # the no-op answer is documented too
    for path, method in [("/api/tenants/{tenant_id}/incidents", "get"),
                         ("/api/tenants/{tenant_id}/incidents/redrive", "post"),
                         ("/api/tenants/{tenant_id}/incidents/{incident_id}/redrive", "post")]:
        assert paths[path][method]["security"] == [{"operator": []}], (path, method)
    schemas = spec["components"]["schemas"]
    assert schemas["ConversationPatch"]["additionalProperties"] is False
    assert schemas["CreateRecordRequest"]["additionalProperties"] is False


async def test_an_operator_token_without_a_tenant_is_told_how_to_erase(
        api: httpx.AsyncClient, settings: Settings) -> None:
    token = mint_token(settings, subject="op", role="operator", tenant_id=None)
    response = await api.post("/api/tenant/forget", headers={"authorization": f"Bearer {token}"},
                              json={"phone": "+15550001111"})
    assert response.status_code == 403
    assert "--tenant TENANT_ID" in response.json()["title"]
