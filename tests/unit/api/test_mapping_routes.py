"""Operator mapping routes against the sandboxes' live introspection: list, override, validate, preview; and the
tool routes refusing a picklist violation with the CRM's own allowed values."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth import mint_token
from settings import Settings
from store.field_mapping import put_override
from tests.support.sandbox_provider import SandboxDriverProvider
from tests.support.tenants import create_tenant
from tests.unit.api.sandbox_drivers import api, drivers  # noqa: F401 (pytest fixtures, found by import)
from tests.unit.api.support import agent_headers
from tests.unit.api.test_tool_mapping import _budget_property


def _operator(settings: Settings, tenant: uuid.UUID) -> dict[str, str]:
    return {"authorization": f"Bearer {mint_token(settings, subject='op-1', role='operator', tenant_id=tenant)}"}


def _url(tenant: uuid.UUID, rest: str = "") -> str:
    return f"/api/operator/tenants/{tenant}/mapping{rest}"


async def test_list_override_and_delete(api: httpx.AsyncClient, settings: Settings,
                                        sessions: async_sessionmaker[AsyncSession],
                                        drivers: SandboxDriverProvider) -> None:
    _budget_property(drivers)
    tenant = await create_tenant(sessions)
    headers = _operator(settings, tenant)
    listed = (await api.get(_url(tenant), headers=headers)).json()
    default = {"kind": "write", "key": "lead.message", "provider_field": "message", "source": "default"}
    assert default in listed["entries"]
    put = await api.put(_url(tenant, "/write/lead.budget_max"), headers=headers, json={"provider_field": "budget_aed"})
    assert put.status_code == 200, put.text
    assert {"kind": "write", "key": "lead.budget_max", "provider_field": "budget_aed", "source": "override"} in (
        put.json()["entries"])
    assert put.json()["version"] != listed["version"] and "lead" in put.json()["introspected"]
    assert (await api.delete(_url(tenant, "/write/lead.budget_max"), headers=headers)).status_code == 204
    assert (await api.delete(_url(tenant, "/write/lead.budget_max"), headers=headers)).status_code == 404
    assert (await api.put(_url(tenant, "/sideways/lead.x"), headers=headers,
                          json={"provider_field": "x"})).status_code == 404
    assert (await api.put(_url(tenant, "/write/Budget Max"), headers=headers,
                          json={"provider_field": "x"})).status_code == 422
    other = await create_tenant(sessions)
    assert (await api.get(_url(other), headers=headers)).status_code == 404  # pinned operator: another tenant


async def test_an_unknown_provider_field_is_refused_with_the_closest_real_fields(
        api: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        drivers: SandboxDriverProvider) -> None:
    _budget_property(drivers)
    tenant = await create_tenant(sessions)
    refused = await api.put(_url(tenant, "/write/lead.budget_max"), headers=_operator(settings, tenant),
                            json={"provider_field": "budgt_aed"})
    assert refused.status_code == 422 and refused.json()["type"].endswith("/unknown-provider-field")
    (problem,) = refused.json()["problems"]
    assert problem["provider_field"] == "budgt_aed" and problem["suggestions"][0] == "budget_aed"
    read_only = await api.put(_url(tenant, "/write/customer.created"), headers=_operator(settings, tenant),
                              json={"provider_field": "createdate"})
    assert read_only.status_code == 422 and read_only.json()["type"].endswith("/not-writable")


async def test_validate_reports_unknown_fields_and_salesforce_required_fields(
        api: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = await create_tenant(sessions)
    headers = _operator(settings, tenant)
    clean = (await api.post(_url(tenant, "/validate"), headers=headers)).json()
    assert clean["ok"] is True and set(clean["objects"]) == {"customer", "lead", "deal", "case"}
    unverified = await api.put(_url(tenant, "/write/deal.budget"), headers=headers,
                               json={"provider_field": "amuont", "verify": False})
    assert unverified.status_code == 200
    report = (await api.post(_url(tenant, "/validate"), headers=headers)).json()
    assert report["ok"] is False
    (problem,) = report["objects"]["deal"]["problems"]
    assert problem["code"] == "unknown_field" and problem["suggestions"][0] == "amount"

    salesforce = await create_tenant(sessions, provider="salesforce")
    async with sessions.begin() as session:  # a tenant that mapped Opportunity's required StageName away
        await put_override(session, salesforce, "write", "deal.stage", "Description")
    sf = (await api.post(_url(salesforce, "/validate"), headers=_operator(settings, salesforce))).json()
    assert "StageName" in sf["objects"]["deal"]["required_unmapped"]


async def test_picklist_violation_is_refused_by_the_tool_route_with_the_crms_values(
        api: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        drivers: SandboxDriverProvider) -> None:
    tenant = await create_tenant(sessions)
    assert (await api.post(_url(tenant, "/validate"), headers=_operator(settings, tenant))).status_code == 200
    contacts = len(drivers.state("hubspot").records.get("contacts", {}))
    refused = await api.post("/api/tools/crm_create_record", headers=agent_headers(settings, tenant),
                             json={"object": "lead", "fields": {"last_name": "Ng", "status": "scorching"}})
    assert refused.status_code == 422 and refused.json()["type"].endswith("/invalid-field-values")
    (problem,) = refused.json()["fields"]
    assert problem["field"] == "lead.status" and problem["code"] == "picklist" and "NEW" in problem["allowed"]
    assert len(drivers.state("hubspot").records.get("contacts", {})) == contacts  # refused before the CRM
    fixed = (await api.post("/api/tools/crm_create_record", headers=agent_headers(settings, tenant),
                            json={"object": "lead", "fields": {"last_name": "Ng", "status": "open"}})).json()
    assert fixed["ok"] is True
    assert drivers.state("hubspot").records["contacts"][fixed["external_id"]].properties["hs_lead_status"] == "OPEN"


async def test_preview_renders_the_payload_without_a_crm_call(
        api: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = await create_tenant(sessions)
    headers = _operator(settings, tenant)
    shown = (await api.post(_url(tenant, "/preview"), headers=headers,
                            json={"object": "lead", "fields": {"last_name": "Ng", "budget_max": 10}})).json()
    assert shown["payload"] == {"lastname": "Ng", "message": "budget_max: 10"}
    refused = await api.post(_url(tenant, "/preview"), headers=headers,
                             json={"object": "case", "fields": {"subjcet": "x"}})
    assert refused.status_code == 422 and refused.json()["fields"][0]["suggestions"][0] == "case.subject"


async def test_a_create_missing_a_field_the_crm_requires_names_it(
        api: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        drivers: SandboxDriverProvider) -> None:
    """Issue 19: the answer says which field the CRM wants (Salesforce Opportunity: Name, StageName, CloseDate)."""
    tenant = await create_tenant(sessions, provider="salesforce")
    assert (await api.post(_url(tenant, "/validate"), headers=_operator(settings, tenant))).status_code == 200
    refused = await api.post("/api/tools/crm_create_record", headers=agent_headers(settings, tenant),
                             json={"object": "deal", "fields": {"name": "Villa 7"}})
    assert refused.status_code == 422, refused.text
    named = {p["field"]: p["code"] for p in refused.json()["fields"]}
    assert named == {"deal.stage": "required", "deal.close_date": "required"}
    assert "Villa" not in refused.text
