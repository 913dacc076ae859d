"""Issue 11 end to end: a Zoho tenant on the EU or SA data centre connects through the OAuth routes and mirrors a
conversation through the lifecycle (real Temporal, real database, the vault-backed driver provider); an
athenahealth tenant connects with the form and books an appointment from the agent's tool route."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.app import create_app
from api.auth import mint_token
from api.context import AppContext
from api.temporal import TemporalGateway
from settings import OAuthClientSettings, Settings
from tests.support.lifecycle import eventually, lifecycle_worker, relay_for, synced
from tests.unit.vault.support import make_tenant, make_vault, sandbox
from vault.provider import VaultDriverProvider

pytestmark = [pytest.mark.integration]


@dataclass
class Deployment:
    """The app as deployed for one provider: connect routes, agent routes and drivers from the vault."""

    app_ctx: AppContext
    api: httpx.AsyncClient
    browser: httpx.AsyncClient  # the operator's browser on the provider's pages
    drivers: VaultDriverProvider
    state: Any
    hosts: list[str]  # every host the drivers and the token exchange talked to

    def headers(self, role: str, tenant: uuid.UUID) -> dict[str, str]:
        token = mint_token(self.app_ctx.settings, subject=f"{role}-e2e", role=role, tenant_id=tenant)
        return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def deployment(slug: str, settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
                     temporal: TemporalGateway | None = None) -> AsyncIterator[Deployment]:
    _, state, transport = sandbox(slug)
    clients = {slug: OAuthClientSettings(client_id=state.tokens.client_id, client_secret=state.tokens.client_secret)}
    settings = settings.model_copy(update={"oauth_clients": clients, "public_base_url": "https://crm-sor.test"})
    hosts: list[str] = []

    async def seen(request: httpx.Request) -> None:
        hosts.append(request.url.host)

    def factory(base_url: str, auth: httpx.Auth | None) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=base_url, auth=auth, transport=transport, event_hooks={"request": [seen]})

    drivers = VaultDriverProvider(sessions, make_vault(settings, sessions), client_factory=factory,
                                  oauth_clients=clients)
    ctx = AppContext(settings=settings, engine=engine, sessions=sessions,
                     temporal=temporal or TemporalGateway(settings.temporal), extras={"drivers": drivers})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(context=ctx)),
                                 base_url="https://crm-sor.test") as api, \
            httpx.AsyncClient(transport=transport) as browser:
        try:
            yield Deployment(ctx, api, browser, drivers, state, hosts)
        finally:
            limiter = ctx.extras.pop("ratelimiter", None)  # the tool routes' Redis pool, built on first use
            if limiter is not None:
                await limiter.aclose()


@pytest.mark.parametrize("dc", ["eu", "sa"])
async def test_a_zoho_tenant_on_its_data_centre_connects_and_mirrors_a_conversation(
        dc: str, settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client, task_queue: str) -> None:
    async with deployment("zoho", settings, engine, sessions) as d:
        d.state.user_dc = dc
        tenant = await make_tenant(sessions, "zoho", status="pending")
        start = await d.api.post(f"/api/operator/tenants/{tenant}/connect/oauth/start", json={},
                                 headers=d.headers("operator", tenant))
        assert start.status_code == 200, start.text
        consent = await d.browser.get(start.json()["authorize_url"])
        back = dict(parse_qsl(urlsplit(consent.headers["location"]).query))
        assert back["location"] == dc
        connected = await d.api.get("/api/connect/oauth/callback", params=back)
        assert connected.json()["status"] == "active", connected.text

        relay = relay_for(engine, sessions, temporal_client, task_queue, tenants=[tenant])
        d.app_ctx.extras["relay"] = relay
        async with lifecycle_worker(temporal_client, sessions, d.drivers, task_queue):
            response = await d.api.post("/api/agent/conversations", headers=d.headers("agent", tenant), json={
                "customer": {"name": "Layla Haddad", "phone": "+966 50 123 4567", "email": "layla@example.com"},
                "channel": "voice",
                "messages": [{"turn_id": "t1", "role": "customer", "text": "I would like a quote"},
                             {"turn_id": "t2", "role": "agent", "text": "Of course, for which service?"}]})
            assert response.status_code == 201, response.text
            conversation_id, customer_id = uuid.UUID(response.json()["id"]), uuid.UUID(response.json()["customer_id"])
            await relay.drain()
            customer = await eventually(lambda: synced(sessions, "customers", tenant, customer_id), within=60)
            conversation = await eventually(lambda: synced(sessions, "conversations", tenant, conversation_id),
                                            within=60)

        contact = d.state.records["Contacts"][customer.crm_external_id]
        assert contact["Last_Name"] == "Haddad" and contact["Email"] == "layla@example.com"
        note = d.state.records["Notes"][conversation.crm_external_id]
        assert note["Parent_Id"]["id"] == customer.crm_external_id
        assert "customer: I would like a quote" in note["Note_Content"]
        assert "agent: Of course, for which service?" in note["Note_Content"]
        # Every call went to that data centre: its accounts server for the code, its API host for the CRM.
        suffix = {"eu": "eu", "sa": "sa"}[dc]
        assert set(d.hosts) == {f"accounts.zoho.{suffix}", f"www.zohoapis.{suffix}"}


async def test_an_athenahealth_tenant_connects_by_form_and_books_from_the_agent_tool(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
    async with deployment("athenahealth", settings, engine, sessions) as d:
        tenant = await make_tenant(sessions, "athenahealth", status="pending")
        tokens = d.state.tokens
        connected = await d.api.post(f"/api/operator/tenants/{tenant}/connect/credentials",
                                     headers=d.headers("operator", tenant),
                                     json={"client_id": tokens.client_id, "client_secret": tokens.client_secret,
                                           "practice_id": d.state.practice_id, "environment": "preview"})
        assert connected.json()["status"] == "active", connected.text
        patient = d.state.add_patient({"firstname": "Omar", "lastname": "Saleh", "dob": "03/04/1980",
                                       "mobilephone": "(617) 555-0142", "departmentid": "1"})["patientid"]
        slot = d.state.add_slot(date="12/03/2026", starttime="10:30")["appointmentid"]
        agent = d.headers("agent", tenant)

        found = await d.api.post("/api/tools/crm_lookup_customer", json={"phone": "+1 617-555-0142"}, headers=agent)
        assert found.json()["found"] and found.json()["customer"]["external_id"] == patient
        booking = {"object": "appointment", "idempotency_key": "call-42:booking",
                   "fields": {"appointment.slot": slot, "appointment.patient": patient, "appointment.type": "82"}}
        booked = await d.api.post("/api/tools/crm_create_record", json=booking, headers=agent)
        again = await d.api.post("/api/tools/crm_create_record", json=booking, headers=agent)

        assert booked.status_code == 200 and booked.json()["ok"], booked.text
        assert booked.json()["external_id"] == slot and again.json()["external_id"] == slot
        row = d.state.appointments[slot]
        assert row["appointmentstatus"] == "f" and row["patientid"] == patient and row["appointmenttypeid"] == "82"
        assert set(d.hosts) == {"api.preview.platform.athenahealth.com"}
        assert d.state.calls["POST /oauth2/v1/token"] == 1  # one client-credentials token, cached after that
