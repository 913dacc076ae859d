"""An agent on Mindbody, Tekmetric and Toast through the tool routes: look the caller up by phone, create the
customer once although the first answer is lost, and book or update what the vertical books."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from settings import Settings
from tests.support.sandbox_provider import SandboxDriverProvider
from tests.support.tenants import create_tenant
from tests.unit.api.sandbox_drivers import api, drivers  # noqa: F401 (pytest fixtures, found by import)
from tests.unit.api.support import agent_headers

LOOKUP, CREATE = "/api/tools/crm_lookup_customer", "/api/tools/crm_create_record"
UPDATE = "/api/tools/crm_update_record"


async def _call(api: httpx.AsyncClient, headers: dict[str, str], route: str, body: dict[str, Any]) -> Any:
    response = await api.post(route, json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _create_once(api: httpx.AsyncClient, headers: dict[str, str], state: Any, route: str,
                       fields: dict[str, Any]) -> str:
    """The first create's answer is lost after the CRM wrote it; the agent's retry gets that same record."""
    body = {"object": "customer", "fields": fields, "idempotency_key": "call-7:create-customer"}
    state.knobs.fail_after_next, state.knobs.fail_after_route = 1, route
    lost = await _call(api, headers, CREATE, body)
    assert lost["ok"] is False and lost["reason"] == "crm_unavailable"
    retried = await _call(api, headers, CREATE, body)
    again = await _call(api, headers, CREATE, body)
    assert retried["ok"] is True and retried["created"] is False and again["external_id"] == retried["external_id"]
    return str(retried["external_id"])


async def test_mindbody_agent_finds_creates_once_and_books(
        api: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        drivers: SandboxDriverProvider) -> None:
    tenant = await create_tenant(sessions, provider="mindbody")
    headers, state = agent_headers(settings, tenant), drivers.state("mindbody")
    state.add_client({"FirstName": "Ann", "LastName": "Lee", "MobilePhone": "415.555.0100", "Email": "a@x.example"})
    found = await _call(api, headers, LOOKUP, {"phone": "(415) 555-0100"})
    assert found["found"] is True and found["customer"]["name"] == "Ann Lee"
    assert (await _call(api, headers, LOOKUP, {"phone": "+1 212 555 0199"}))["found"] is False

    client_id = await _create_once(api, headers, state, "POST /public/v6/client/addclient", {
        "first_name": "Bo", "last_name": "Park", "email": "bo@example.com", "phone": "2125550199"})
    assert [c["Id"] for c in state.clients.values() if c["LastName"] == "Park"] == [client_id]

    start = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT10:00:00")
    booking = {"object": "appointment", "idempotency_key": "call-7:book", "fields": {
        "client_id": client_id, "start": start, "staff_id": state.staff_id, "location_id": state.location_id,
        "session_type_id": state.session_type_id}}
    booked = await _call(api, headers, CREATE, booking)
    assert booked["ok"] is True and (await _call(api, headers, CREATE, booking))["external_id"] == booked["external_id"]
    assert len(state.appointments) == 1
    cancelled = await _call(api, headers, UPDATE, {"object": "appointment", "external_id": booked["external_id"],
                                                   "fields": {"Execute": "cancel"}})
    assert cancelled["ok"] is True and state.appointments[int(booked["external_id"])]["Status"] == "Cancelled"
    assert state.calls["POST /public/v6/usertoken/issue"] == 0  # the token the tenant was connected with serves


async def test_tekmetric_agent_finds_creates_once_books_and_updates_the_repair_order(
        api: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        drivers: SandboxDriverProvider) -> None:
    tenant = await create_tenant(sessions, provider="tekmetric")
    headers, state = agent_headers(settings, tenant), drivers.state("tekmetric")
    known = state.add_customer({"firstName": "Ann", "lastName": "Lee", "email": ["ann@x.example"],
                                "phones": [{"number": "415-555-0100", "primary": True}]})
    found = await _call(api, headers, LOOKUP, {"phone": "+14155550100"})
    assert found["found"] is True and found["customer"]["external_id"] == str(known["id"])

    customer_id = await _create_once(api, headers, state, "POST /api/v1/customers", {
        "first_name": "Bo", "last_name": "Park", "email": "bo@example.com", "phone": "212-555-0199"})
    assert [c["id"] for c in state.customers.values() if c["lastName"] == "Park"] == [int(customer_id)]

    order = state.add_repair_order({"customerId": int(customer_id), "milesIn": 42000})
    updated = await _call(api, headers, UPDATE, {"object": "case", "external_id": str(order["id"]),
                                                 "fields": {"key_tag": "K-17"}})
    assert updated["ok"] is True and order["keyTag"] == "K-17" and order["milesIn"] == 42000
    booking = {"object": "appointment", "idempotency_key": "call-7:book", "fields": {
        "customer_id": int(customer_id), "subject": "Brake check", "start": "2026-12-01T15:00:00Z",
        "end": "2026-12-01T16:00:00Z"}}
    first, second = await _call(api, headers, CREATE, booking), await _call(api, headers, CREATE, booking)
    assert first["created"] is True and second["created"] is False and first["external_id"] == second["external_id"]
    assert len(state.appointments) == 1


async def test_toast_agent_finds_and_creates_the_guest_once_and_hears_updates_are_unsupported(
        api: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        drivers: SandboxDriverProvider) -> None:
    tenant = await create_tenant(sessions, provider="toast")
    headers, state = agent_headers(settings, tenant), drivers.state("toast")
    known = state.seed_guest({"firstName": "Ann", "lastName": "Lee", "email": "ann@x.example", "phone": "4155550100"})
    found = await _call(api, headers, LOOKUP, {"phone": "+1 (415) 555-0100"})
    assert found["found"] is True and found["customer"]["external_id"] == known["guid"]

    guest = await _create_once(api, headers, state, "POST /crm/v1/customers", {
        "first_name": "Bo", "last_name": "Park", "email": "bo@example.com", "phone": "2125550199"})
    assert [g["guid"] for g in state.guests.values() if g["lastName"] == "Park"] == [guest]
    refused = await _call(api, headers, UPDATE, {"object": "customer", "external_id": guest,
                                                 "fields": {"last_name": "Parker"}})
    assert refused["ok"] is False and refused["reason"] == "crm_rejected"
    assert state.guests[guest]["lastName"] == "Park"
    assert state.calls["POST /authentication/v1/authentication/login"] == 0  # the connected token serves
