"""The CRM installer on fresh HubSpot, Salesforce and Zoho sandboxes (without our fields): it creates them
through each provider's metadata API, a second run finds them, exactly-once create then works; a CRM that
refuses (a missing scope) gets exact manual steps, holds the tenant `pending`, or runs visibly degraded."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.auth import mint_token
from sandboxes import hubspot as hubspot_sandbox
from sandboxes import salesforce as salesforce_sandbox
from sandboxes.common import TokenIssuer
from sandboxes.zoho import app as zoho_sandbox
from sandboxes.zoho.state import ZohoState
from settings import Settings
from store import installs
from tests.support.sandbox_provider import SandboxDriverProvider
from tests.support.tenants import create_tenant
from tests.unit.api.sandbox_drivers import api  # noqa: F401 (pytest fixtures, found by import)
from tests.unit.api.support import agent_headers, client_for, context


def _fresh() -> dict[str, Any]:
    return {
        "hubspot": hubspot_sandbox.create_app(hubspot_sandbox.HubSpotState(tokens=TokenIssuer("hubspot", 1800),
                                                                           installed=False)),
        "salesforce": salesforce_sandbox.create_app(salesforce_sandbox.SalesforceState(
            tokens=TokenIssuer("salesforce", 7200), installed=False)),
        "zoho": zoho_sandbox.create_app(ZohoState(tokens=TokenIssuer("zoho", 3600), installed=False)),
    }


@pytest_asyncio.fixture(loop_scope="session")
async def drivers(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[SandboxDriverProvider]:
    provider = SandboxDriverProvider(sessions, apps=_fresh())
    yield provider
    await provider.aclose()


def _operator(settings: Settings, tenant: uuid.UUID) -> dict[str, str]:
    return {"authorization": f"Bearer {mint_token(settings, subject='op-1', role='operator', tenant_id=tenant)}"}


def _outcomes(body: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(f["object"], f["field"]): f["outcome"] for f in body["report"]["fields"]}


CREATES = {"hubspot": {"last_name": "Fresh", "email": "fresh@example.com"},
           "salesforce": {"last_name": "Fresh"}, "zoho": {"last_name": "Fresh"}}


@pytest.mark.parametrize("slug", ["hubspot", "salesforce", "zoho"])
async def test_the_installer_creates_our_fields_and_exactly_once_create_then_works(
        slug: str, api: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        drivers: SandboxDriverProvider) -> None:
    tenant = await create_tenant(sessions, provider=slug)
    create = {"object": "customer", "fields": CREATES[slug], "idempotency_key": f"install-{slug}"}
    before = (await api.post("/api/tools/crm_create_record", json=create, headers=agent_headers(settings, tenant)))
    assert before.json()["ok"] is False  # the CRM has no field for our key yet: refused, not duplicated

    first = await api.post(f"/api/operator/tenants/{tenant}/install", headers=_operator(settings, tenant))
    assert first.status_code == 200, first.text
    assert first.json()["state"] == "complete" and first.json()["tenant_status"] == "active"
    outcomes = _outcomes(first.json())
    assert outcomes[("customer", _key(slug))] == "created"
    assert set(outcomes.values()) <= {"created", "present"}
    second = await api.post(f"/api/operator/tenants/{tenant}/install", headers=_operator(settings, tenant))
    assert set(_outcomes(second.json()).values()) == {"present"}  # idempotent

    made = [(await api.post("/api/tools/crm_create_record", json=create,
                            headers=agent_headers(settings, tenant))).json() for _ in range(2)]
    assert made[0]["ok"] is True and made[1]["external_id"] == made[0]["external_id"] and made[1]["created"] is False


def _key(slug: str) -> str:
    return {"hubspot": "crm_sor_idempotency_key", "salesforce": "CrmSorKey__c", "zoho": "Crm_Sor_Key"}[slug]


async def test_a_refusing_crm_gets_manual_steps_and_holds_the_tenant_until_accepted_degraded(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
    state = hubspot_sandbox.HubSpotState(tokens=TokenIssuer("hubspot", 1800), installed=False, schema_write=False)
    provider = SandboxDriverProvider(sessions, apps={"hubspot": hubspot_sandbox.create_app(state)})
    try:
        async with client_for(context(settings, engine, sessions, provider)) as client:
            tenant = await create_tenant(sessions)
            url, headers = f"/api/operator/tenants/{tenant}/install", _operator(settings, tenant)
            held = (await client.post(url, headers=headers)).json()
            assert held["state"] == "manual_steps" and held["tenant_status"] == "pending"
            assert held["tenant_reason"] == installs.PENDING_REASON
            manual = [f for f in held["report"]["fields"] if f["outcome"] == "manual"]
            assert manual and all("API name" in f["instruction"] and f["reason"].endswith("AuthError")
                                  for f in manual)
            assert any("crm_sor_idempotency_key marked unique" in f["instruction"] for f in manual)
            assert (await client.get(url, headers=headers)).json()["state"] == "manual_steps"
            degraded = (await client.post(url, json={"accept_degraded": True}, headers=headers)).json()
            assert degraded["state"] == "degraded" and degraded["tenant_status"] == "active"
            assert degraded["tenant_reason"].startswith("degraded:")
            state.schema_write = True  # the admin grants the scope: the next run completes and clears the flag
            fixed = (await client.post(url, headers=headers)).json()
            assert fixed["state"] == "complete" and fixed["tenant_status"] == "active"
            assert fixed["tenant_reason"] is None
    finally:
        await provider.aclose()
