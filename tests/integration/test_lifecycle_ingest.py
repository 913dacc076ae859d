"""Agent ingest and operator incident routes: the tenant comes from the token, bad input is a 4xx problem
(that never echoes the submitted values), retries are idempotent, and nothing touches Temporal or the CRM."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from settings import Settings
from store import content
from store.base import SyncState
from store.models import Customer, MirrorOutbox
from tests.support.lifecycle import agent_api, operator_headers
from tests.support.tenants import create_tenant

pytestmark = [pytest.mark.integration]
PROBLEM = "application/problem+json"


async def _outbox(sessions: async_sessionmaker[AsyncSession], tenant: uuid.UUID) -> list[tuple[str, str]]:
    async with sessions() as session:
        rows = await session.execute(select(MirrorOutbox.table_name, MirrorOutbox.op)
                                     .where(MirrorOutbox.tenant_id == tenant).order_by(MirrorOutbox.id))
        return [(table, op) for table, op in rows]


async def test_bad_input_is_a_problem_that_echoes_nothing(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = await create_tenant(sessions)
    async with agent_api(settings, engine, sessions, tenant) as api:
        cases: list[tuple[str, str, object, int]] = [
            ("POST", "/api/agent/customers", b"{not json", 400),
            ("POST", "/api/agent/customers", [1, 2], 422),
            ("POST", "/api/agent/customers", {}, 422),  # nothing that identifies a customer
            ("POST", "/api/agent/customers", {"name": "x", "phone": "call me maybe 0987"}, 422),
            ("POST", "/api/agent/customers", {"name": "x", "email": "secret-at-example"}, 422),
            ("POST", "/api/agent/customers", {"name": "x", "tenant_id": str(uuid.uuid4())}, 422),
            ("POST", "/api/agent/customers", {"name": "x", "fields": {"Bad Key!": "secret-value"}}, 422),
            ("POST", "/api/agent/conversations", {"customer_id": str(uuid.uuid4()), "customer": {"name": "x"}}, 422),
            ("POST", "/api/agent/conversations", {"customer": {"name": "x"}, "channel": "fax"}, 422),
            ("POST", "/api/agent/appointments", {"starts_at": "2026-05-01T10:00:00"}, 422),  # no zone
            ("POST", "/api/agent/appointments", {"starts_at": "2026-05-01T10:00:00Z",
                                                 "ends_at": "2026-05-01T09:00:00Z"}, 422),
            ("POST", "/api/agent/cases", {"subject": "x", "customer_id": str(uuid.uuid4())}, 422),  # not ours
            ("PATCH", f"/api/agent/customers/{uuid.uuid4()}", {"name": "x"}, 404),
            ("PATCH", "/api/agent/customers/not-a-uuid", {"name": "x"}, 404),
            ("POST", f"/api/agent/conversations/{uuid.uuid4()}/messages",
             {"messages": [{"turn_id": "1", "role": "agent", "text": "x"}]}, 404),
            ("GET", "/api/agent/records/tenants/" + str(uuid.uuid4()), None, 404),
        ]
        for method, path, body, status in cases:
            content = body if isinstance(body, bytes) else None
            response = await api.request(method, path, content=content,
                                         json=None if content is not None or body is None else body)
            assert (response.status_code, response.headers["content-type"]) == (status, PROBLEM), (path, body)
            assert "secret" not in response.text and "0987" not in response.text
        too_big = await api.post("/api/agent/customers", content=b"{" + b" " * (2 << 20) + b"}",
                                 headers={"content-type": "application/json"})
        assert too_big.status_code == 413
    assert await _outbox(sessions, tenant) == []  # nothing half-written


async def test_the_tenant_is_the_tokens(settings: Settings, engine: AsyncEngine,
                                        sessions: async_sessionmaker[AsyncSession]) -> None:
    mine, theirs = await create_tenant(sessions), await create_tenant(sessions)
    async with agent_api(settings, engine, sessions, theirs) as api:
        their_customer = (await api.post("/api/agent/customers", json={"name": "Theirs"})).json()["id"]
    async with agent_api(settings, engine, sessions, mine) as api:
        anonymous = await api.post("/api/agent/customers", json={"name": "x"}, headers={"Authorization": ""})
        assert anonymous.status_code == 401
        as_operator = await api.post("/api/agent/customers", json={"name": "x"}, headers=operator_headers(settings))
        assert as_operator.status_code == 403
        assert (await api.patch(f"/api/agent/customers/{their_customer}", json={"name": "x"})).status_code == 404
        lead = await api.post("/api/agent/leads", json={"customer_id": their_customer})
        assert lead.status_code == 422 and lead.json()["type"].endswith("unknown-customer")
        taken = await api.post("/api/agent/customers", json={"id": their_customer, "name": "x"})
        assert taken.status_code == 409
        assert (await api.get(f"/api/agent/records/customers/{their_customer}")).status_code == 404
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Customer)
                                    .where(Customer.tenant_id == mine)) == 0
    disabled = await create_tenant(sessions, status="disabled")
    async with agent_api(settings, engine, sessions, disabled) as api:
        assert (await api.post("/api/agent/customers", json={"name": "x"})).status_code == 403


async def test_retries_are_idempotent_and_updates_queue_intents(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = await create_tenant(sessions)
    customer_id, conversation_id = str(uuid.uuid4()), str(uuid.uuid4())
    async with agent_api(settings, engine, sessions, tenant) as api:
        first = await api.post("/api/agent/customers", json={"id": customer_id, "name": "Hedy Lamarr"})
        again = await api.post("/api/agent/customers", json={"id": customer_id, "name": "Hedy Lamarr"})
        assert (first.status_code, again.status_code) == (201, 200) and first.json()["id"] == again.json()["id"]
        conversation = await api.post("/api/agent/conversations", json={
            "id": conversation_id, "customer_id": customer_id,
            "messages": [{"turn_id": "1", "role": "customer", "text": "hello"}]})
        assert conversation.status_code == 201 and conversation.json()["workflow_id"] == \
            f"mirror:{tenant}"  # the tenant's mirror writes it
        resent = await api.post(f"/api/agent/conversations/{conversation_id}/messages", json={"messages": [
            {"turn_id": "1", "role": "customer", "text": "hello"}, {"turn_id": "2", "role": "agent", "text": "hi"}]})
        assert resent.json()["accepted"] == 1 and resent.json()["duplicates"] == 1
        twice = await api.post(f"/api/agent/conversations/{conversation_id}/messages", json={"messages": [
            {"turn_id": "3", "role": "agent", "text": "a"}, {"turn_id": "3", "role": "agent", "text": "b"}]})
        assert twice.status_code == 422
        patched = await api.patch(f"/api/agent/customers/{customer_id}", json={"fields": {"city": "Vienna"}})
        assert patched.status_code == 202
        summary = await api.patch(f"/api/agent/conversations/{conversation_id}", json={"summary": "wants a loft"})
        assert summary.status_code == 202 and summary.json()["changed"] is True
        # Nothing to change: said so, and nothing is written (no CRM write, no new retention window).
        empty = await api.patch(f"/api/agent/conversations/{conversation_id}", json={})
        same = await api.patch(f"/api/agent/customers/{customer_id}", json={"fields": {"city": "Vienna"}})
        assert (empty.status_code, empty.json()["changed"], same.status_code, same.json()["changed"]) == \
            (200, False, 200, False)
        # A retried conversation POST whose first answer was lost (customer created in the same call) answers
        # with the same conversation and customer ids, so the agent can go on with that customer.
        body = {"id": str(uuid.uuid4()), "customer": {"name": "Grace Hopper"},
                "messages": [{"turn_id": "1", "role": "customer", "text": "hi"}]}
        created = await api.post("/api/agent/conversations", json=body)
        retried = await api.post("/api/agent/conversations", json=body)
        assert (created.status_code, retried.status_code) == (201, 200)
        assert retried.json()["id"] == created.json()["id"] and \
            retried.json()["customer_id"] == created.json()["customer_id"]
        status = (await api.get(f"/api/agent/records/customers/{customer_id}")).json()
        assert status["sync_state"] == "pending" and status["crm_external_id"] is None
        assert status["sync_attempts"] == 0 and status["workflow_id"] == f"mirror:{tenant}"
    assert await _outbox(sessions, tenant) == [
        ("customers", "create"), ("conversations", "create"), ("messages", "append"), ("messages", "append"),
        ("customers", "update"), ("conversations", "update"),
        ("customers", "create"), ("conversations", "create"), ("messages", "append")]


async def test_incident_routes_are_operator_only_and_tenant_pinned(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant, other = await create_tenant(sessions), await create_tenant(sessions)
    async with agent_api(settings, engine, sessions, tenant) as api:
        path = f"/api/tenants/{tenant}/incidents"
        assert (await api.get(path)).status_code == 403  # an agent token
        assert (await api.get(path, headers=operator_headers(settings, other))).status_code == 404
        assert (await api.get(path + "?status=bogus", headers=operator_headers(settings))).status_code == 422
        listed = await api.get(path, headers=operator_headers(settings, tenant))
        assert listed.status_code == 200 and listed.json() == {"tenant_id": str(tenant), "incidents": []}
        missing = await api.post(f"{path}/{uuid.uuid4()}/redrive", headers=operator_headers(settings))
        assert missing.status_code == 404


async def test_operator_lists_a_tenants_rows_by_sync_state(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant, other = await create_tenant(sessions), await create_tenant(sessions)
    async with agent_api(settings, engine, sessions, tenant) as api:
        secret = "Secretname Nobodyknows"
        ids = sorted([(await api.post("/api/agent/customers", json={"name": f"{secret}{i}"})).json()["id"]
                      for i in range(3)])
        async with sessions() as session, session.begin():  # one of them failed its last CRM write
            await content.record_failure(session, "customers", [uuid.UUID(ids[0])], "unavailable:503",
                                         state=SyncState.RETRYING, retry_at=None)
        path = f"/api/tenants/{tenant}/records"
        assert (await api.get(path)).status_code == 403  # an agent token
        assert (await api.get(path, headers=operator_headers(settings, other))).status_code == 404
        assert (await api.get(path + "?state=failed", headers=operator_headers(settings))).status_code == 422
        first = (await api.get(path + "?limit=2", headers=operator_headers(settings, tenant))).json()
        assert first["counts"]["customers"] == {"pending": 2, "retrying": 1}
        assert first["workflow_id"] == f"mirror:{tenant}"
        rest = (await api.get(f"{path}?limit=2&after={first['next_after']}", headers=operator_headers(settings))).json()
        assert [r["id"] for r in first["rows"] + rest["rows"]] == ids and rest["next_after"] is None
        retrying = (await api.get(path + "?state=retrying", headers=operator_headers(settings))).json()
        assert retrying["rows"] == [{"id": ids[0], "sync_state": "retrying", "sync_attempts": 1,
                                     "last_sync_error": "unavailable:503", "retry_at": None}]
        assert "Secretname" not in str(first) + str(rest)  # ids, states and codes only


async def test_a_phone_is_read_in_the_tenants_region(settings: Settings, engine: AsyncEngine,
                                                     sessions: async_sessionmaker[AsyncSession]) -> None:
    dubai = await create_tenant(sessions, settings={"default_region": "AE"})
    austin = await create_tenant(sessions)
    async with agent_api(settings, engine, sessions, dubai) as api:
        local = (await api.post("/api/agent/customers", json={"name": "Layla", "phone": "٠٥٠ ١٢٣ ٤٥٦٧"})).json()
    async with agent_api(settings, engine, sessions, austin) as api:
        us = (await api.post("/api/agent/customers", json={"name": "Ann", "phone": "(415) 555-2671"})).json()
        abroad = (await api.post("/api/agent/customers", json={"name": "Omar", "phone": "00971 50 123 4567"})).json()
    async with sessions() as session:
        phones = [(await session.get(Customer, uuid.UUID(row["id"]))).phone  # type: ignore[union-attr]
                  for row in (local, us, abroad)]
    assert phones == ["+971501234567", "+14155552671", "+971501234567"]
