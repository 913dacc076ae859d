"""The console's field-mapping page over plain HTTP (no browser), against the HubSpot sandbox's live properties:
the refusals it shows come from the mapping services (the JSON routes' own), what the operator typed is kept, and
its forms are CSRF-guarded and tenant-pinned. Also the preview form's sample parser."""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.app import create_app
from api.auth import mint_token
from api.console.mapping_view import sample_fields
from settings import Settings
from store.models import TenantCrmFieldMapping
from tests.support.sandbox_provider import SandboxDriverProvider
from tests.support.tenants import create_tenant
from tests.unit.api.sandbox_drivers import drivers  # noqa: F401 (pytest fixtures, found by import)
from tests.unit.api.support import context
from tests.unit.api.test_console_signin import _sign_in
from tests.unit.api.test_tool_mapping import _budget_property


@pytest_asyncio.fixture(loop_scope="session")
async def browser(settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
                  drivers: SandboxDriverProvider) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(context=context(settings, engine, sessions, drivers))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://console.test") as client:
        yield client


async def _signed_in(browser: httpx.AsyncClient, settings: Settings, tenant: uuid.UUID) -> str:
    """Signs in an operator pinned to `tenant`; the session's CSRF token."""
    signed = await _sign_in(browser, mint_token(settings, subject="op-map", role="operator", tenant_id=tenant))
    assert signed.status_code == 303
    page = await browser.get(f"/console/t/{tenant}/mapping")
    assert page.status_code == 200
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


async def test_an_unknown_field_is_refused_with_suggestions_and_the_form_keeps_the_input(
        browser: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        drivers: SandboxDriverProvider) -> None:
    _budget_property(drivers)
    tenant = await create_tenant(sessions)
    csrf = await _signed_in(browser, settings, tenant)
    url = f"/console/t/{tenant}/mapping"
    refused = await browser.post(f"{url}/override", data={
        "csrf_token": csrf, "kind": "write,read", "key": "lead.budget_max", "provider_field": "budgt_aed",
        "verify": "on"})
    assert refused.status_code == 422
    text = html.unescape(refused.text)
    assert "lead has no field budgt_aed in this CRM. Closest fields: budget_aed." in text
    assert 'name="provider_field" value="budget_aed"' in text  # the suggestion, offered as a one-click fix
    assert 'id="key" name="key" value="lead.budget_max"' in text and 'value="budgt_aed"' in text  # kept
    assert "Budget (AED)" in text  # the CRM's label beside the suggestion

    saved = await browser.post(f"{url}/override", data={
        "csrf_token": csrf, "kind": "write,read", "key": "lead.budget_max", "provider_field": "budget_aed",
        "verify": "on"})
    assert saved.status_code == 200 and "Mapped lead.budget_max to budget_aed (write and read)." in saved.text
    shown = await browser.post(f"{url}/preview", data={"csrf_token": csrf, "object": "lead",
                                                      "fields": "last_name: Ng\nbudget_max: 1,250,000"})
    assert shown.status_code == 200
    assert re.search(r"<code>budget_aed</code></th><td><code>1250000</code>", shown.text), shown.text
    unreadable = await browser.post(f"{url}/preview", data={"csrf_token": csrf, "object": "lead",
                                                           "fields": "last_name Ng"})
    assert unreadable.status_code == 422 and "Line 1 is not" in html.unescape(unreadable.text)
    assert ">last_name Ng</textarea>" in unreadable.text  # the sample stays in the form
    removed = await browser.post(f"{url}/remove", data={"csrf_token": csrf, "kind": "write,read",
                                                       "key": "lead.budget_max"})
    assert removed.status_code == 200 and "Removed the override of lead.budget_max" in removed.text
    again = await browser.post(f"{url}/remove", data={"csrf_token": csrf, "kind": "write", "key": "lead.budget_max"})
    assert again.status_code == 404 and "No such override." in again.text


async def test_check_against_the_crm_lists_what_needs_fixing(
        browser: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = await create_tenant(sessions)
    csrf = await _signed_in(browser, settings, tenant)
    url = f"/console/t/{tenant}/mapping"
    assert "Not read from the CRM yet." in (await browser.get(url)).text
    unverified = await browser.post(f"{url}/override", data={  # saved unchecked: a CRM that cannot describe itself
        "csrf_token": csrf, "kind": "write", "key": "deal.budget", "provider_field": "amuont"})
    assert unverified.status_code == 200
    checked = await browser.post(f"{url}/validate?object=deal", data={"csrf_token": csrf})
    assert checked.status_code == 200
    text = html.unescape(checked.text)
    assert "some mappings need fixing" in text
    assert "deal has no field amuont in this CRM. Closest: <code>amount</code>" in text
    assert "Keys and CRM fields: deal" in text and 'id="field-deal-amount"' in text  # the deal's CRM fields
    assert "not in the CRM" in text  # beside the key whose field the CRM lacks


async def test_mapping_forms_need_the_csrf_token_and_the_operators_own_tenant(
        browser: httpx.AsyncClient, settings: Settings, sessions: async_sessionmaker[AsyncSession],
        drivers: SandboxDriverProvider) -> None:
    tenant, other = await create_tenant(sessions), await create_tenant(sessions)
    csrf = await _signed_in(browser, settings, tenant)
    form = {"kind": "write", "key": "lead.budget_max", "provider_field": "amount", "verify": "off"}
    for action in ("override", "remove", "validate", "preview", "install"):
        without = await browser.post(f"/console/t/{tenant}/mapping/{action}", data=form)
        assert without.status_code == 403, action
        elsewhere = await browser.post(f"/console/t/{other}/mapping/{action}", data=form | {"csrf_token": csrf})
        assert elsewhere.status_code == 404, action
    assert (await browser.get(f"/console/t/{other}/mapping")).status_code == 404
    async with sessions() as session:  # nothing was saved by the refused posts
        saved = (await session.execute(select(TenantCrmFieldMapping).where(
            TenantCrmFieldMapping.tenant_id.in_([tenant, other])))).scalars().all()
    assert saved == []


def test_sample_records_are_key_value_lines() -> None:
    assert sample_fields("last_name: Ng\n\n  starts_at: 2026-12-01T15:00:00Z \n") == {
        "last_name": "Ng", "starts_at": "2026-12-01T15:00:00Z"}
    for bad, line in (("no colon here", 1), ("a: 1\n: 2", 2), ("a: 1\na: 2", 2), ("two words: x", 1)):
        with pytest.raises(ValueError, match=f"Line {line} "):
            sample_fields(bad)
