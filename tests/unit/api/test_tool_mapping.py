"""The tool routes and the mirror write through one mapping engine: canonical names as OpenAPI documents them,
a tenant's custom field written and read back under its canonical key, and the same payload on both paths."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import ActivityEnvironment

from activities.mirror import MirrorActivities
from activities.types import MirrorPassInput
from drivers.models import FieldInfo
from settings import Settings
from store.field_mapping import put_override, save_schema
from store.models import Lead
from tests.support.sandbox_provider import SandboxDriverProvider
from tests.support.tenants import create_tenant
from tests.unit.api.sandbox_drivers import api, drivers  # noqa: F401 (pytest fixtures, found by import)
from tests.unit.api.support import agent_headers

TOOLS = "/api/tools"
CREATE, LOOKUP, SEARCH = f"{TOOLS}/crm_create_record", f"{TOOLS}/crm_lookup_customer", f"{TOOLS}/crm_search_records"
SYSTEM = ("hs_", "createdate", "lastmodifieddate", "crm_sor_")


def _budget_property(drivers: SandboxDriverProvider) -> None:
    drivers.state("hubspot").custom_properties.setdefault("contacts", []).append(
        {"name": "budget_aed", "label": "Budget (AED)", "type": "number", "fieldType": "number", "options": [],
         "hubspotDefined": False, "modificationMetadata": {"readOnlyValue": False}})


def _content(properties: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in properties.items() if not k.startswith(SYSTEM)}


async def test_documented_canonical_names_work_short_and_full(
        api: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        drivers: SandboxDriverProvider) -> None:
    """Issue 19: `lead.budget_max` and `budget_max` both write (kept in the lead's details when unmapped)."""
    tenant = await create_tenant(sessions)
    headers = agent_headers(settings, tenant)
    for key in ("lead.budget_max", "budget_max"):
        answer = (await api.post(CREATE, headers=headers, json={
            "object": "lead", "fields": {"last_name": f"Full{key.count('.')}", key: 500000}})).json()
        assert answer["ok"] is True, answer
        record = drivers.state("hubspot").records["contacts"][answer["external_id"]]
        assert record.properties["message"] == "budget_max: 500000"


async def test_an_override_writes_the_custom_field_and_reads_it_back_canonically(
        api: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        drivers: SandboxDriverProvider) -> None:
    _budget_property(drivers)
    drivers.state("hubspot").instant_search()  # read back by search at once: this test is about the mapping
    tenant = await create_tenant(sessions)
    async with sessions.begin() as session:
        for kind in ("write", "read"):
            await put_override(session, tenant, kind, "customer.budget_max", "budget_aed")
    headers = agent_headers(settings, tenant)
    created = (await api.post(CREATE, headers=headers, json={"object": "customer", "fields": {
        "first_name": "Noor", "last_name": "Haddad", "email": "noor@example.com", "phone": "+971501234567",
        "budget_max": 2500000}})).json()
    assert created["ok"] is True, created
    contact = drivers.state("hubspot").records["contacts"][created["external_id"]]
    assert contact.properties["budget_aed"] == "2500000" and "budget_max" not in contact.properties
    found = (await api.post(LOOKUP, headers=headers, json={"email": "noor@example.com"})).json()
    assert found["customer"]["fields"]["customer.budget_max"] == "2500000"
    hits = (await api.post(SEARCH, headers=headers, json={"object": "customer", "query": "Haddad"})).json()
    assert hits["records"][0]["fields"]["customer.budget_max"] == "2500000"


async def test_an_unmapped_customer_field_is_a_structured_422_with_suggestions(
        api: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        drivers: SandboxDriverProvider) -> None:
    tenant = await create_tenant(sessions)
    before = len(drivers.state("hubspot").records.get("contacts", {}))
    refused = await api.post(CREATE, headers=agent_headers(settings, tenant),
                             json={"object": "customer", "fields": {"last_name": "X", "citty": "Oslo"}})
    body = refused.json()
    assert refused.status_code == 422 and body["type"].endswith("/unmapped-fields")
    assert body["fields"][0]["field"] == "customer.citty" and "customer.city" in body["fields"][0]["suggestions"]
    assert "Oslo" not in refused.text
    assert len(drivers.state("hubspot").records.get("contacts", {})) == before  # no CRM round trip


async def test_tool_route_and_mirror_write_the_same_payload(
        api: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        drivers: SandboxDriverProvider) -> None:
    """One engine: the same lead content through the tool route and through the mirror lands identically."""
    _budget_property(drivers)
    tenant = await create_tenant(sessions)
    async with sessions.begin() as session:
        await put_override(session, tenant, "write", "lead.budget_max", "budget_aed")
    # (No email: HubSpot refuses a second contact with one, and both paths create one here.)
    content = {"last_name": "Pinned", "budget_max": 750000, "timeline": "soon",
               "lead.bedrooms": 3}
    lead = Lead(id=uuid.uuid4(), tenant_id=tenant, source="phone", status="new", fields=content, sync_attempts=0)
    async with sessions.begin() as session:
        session.add(lead)
    # The mirror's derived key HubSpot has a field for (the lifecycle stage) given to the tool too: same input.
    # (Its derived `source` has no HubSpot field, so the mirror drops it, as derived keys without a field are.)
    tool = (await api.post(CREATE, headers=agent_headers(settings, tenant), json={
        "object": "lead", "fields": {**content, "stage": "lead"}})).json()
    assert tool["ok"] is True, tool
    mirrored = await ActivityEnvironment().run(MirrorActivities(sessions, drivers).mirror_pass, MirrorPassInput(
        tenant_id=tenant))
    assert mirrored.failed == 0 and mirrored.state == "synced"
    records = drivers.state("hubspot").records["contacts"]
    by_tool = _content(records[tool["external_id"]].properties)
    by_mirror = _content(next(r for r in records.values()
                              if r.id != tool["external_id"] and r.properties.get("lastname") == "Pinned").properties)
    assert by_tool == by_mirror
    assert by_tool["budget_aed"] == "750000" and by_tool["message"] == "bedrooms: 3\ntimeline: soon"


async def test_the_mirror_refuses_a_picklist_violation_as_the_tool_route_does(
        sessions: async_sessionmaker[AsyncSession], drivers: SandboxDriverProvider) -> None:
    """Same engine, same rule: the row stops with `invalid_field_values` (names only) instead of a CRM rejection."""
    tenant = await create_tenant(sessions)
    async with sessions.begin() as session:
        await save_schema(session, tenant, "lead", [FieldInfo(name="hs_lead_status", label="Lead Status",
                                                              type="enumeration", picklist_values=["NEW", "OPEN"])])
    lead = Lead(id=uuid.uuid4(), tenant_id=tenant, status="scorching", fields={"last_name": "Hot"}, sync_attempts=0)
    async with sessions.begin() as session:
        session.add(lead)
    passed = await ActivityEnvironment().run(MirrorActivities(sessions, drivers).mirror_pass, MirrorPassInput(
        tenant_id=tenant))
    assert passed.failed == 1 and passed.synced == 0
    async with sessions() as session:
        row = await session.get(Lead, lead.id)
    assert row is not None and row.last_sync_error == "invalid_field_values" and row.sync_state == "blocked"
    assert row.crm_external_id is None  # refused before any CRM call
