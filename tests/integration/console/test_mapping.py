"""The field-mapping page in a real browser with JavaScript off (Debian's headless Chromium through Playwright),
against the served app and a HubSpot sandbox portal that has the tenant's own custom properties.

An operator connects a HubSpot tenant whose app may not create properties (the installer leaves manual steps),
reads the portal's fields, maps a custom field — first mistyped: refused with the closest real fields, the form
keeping what was typed — sees a sample record's CRM payload use it, runs the installer once the scope is granted,
and removes the override again. The JSON operator route sees the same mapping (one service behind both).
"""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from sandboxes import hubspot_schema
from tests.support.console import Console, shot, sign_in

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def _portal_properties(console: Console) -> None:
    """The tenant's own contact properties: a number (their budget) and a picklist (their areas)."""
    for body in ({"name": "budget_aed", "label": "Budget (AED)", "type": "number", "fieldType": "number",
                  "groupName": "contactinformation"},
                 {"name": "preferred_area", "label": "Preferred area", "type": "enumeration", "fieldType": "select",
                  "groupName": "contactinformation",
                  "options": [{"label": area, "value": area} for area in ("Marina", "Downtown", "JLT")]}):
        console.hubspot.custom_properties.setdefault("contacts", []).append(
            hubspot_schema.custom_property("contacts", body))


async def _connect(page: Page, console: Console) -> None:
    await page.goto(f"{console.base_url}/console/t/{console.hubspot_tenant}/connect")
    await page.get_by_role("button", name="Connect with hubspot").click()
    await expect(page).to_have_url(f"{console.base_url}/console/t/{console.hubspot_tenant}/connect")
    await expect(page.locator("#connection-status")).to_have_text("pending")  # held: exactly-once create missing


async def test_map_a_custom_field_preview_it_and_run_the_installer(browser: Browser, console: Console) -> None:
    _portal_properties(console)
    console.hubspot.installed = False  # a fresh portal: no crm_sor_* properties yet…
    console.hubspot.schema_write = False  # …and an app without the crm.schemas.*.write scopes
    page = await (await browser.new_context(java_script_enabled=False)).new_page()
    await sign_in(page, console, console.operator_token())
    await _connect(page, console)
    await page.get_by_role("link", name="Field mapping").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Field mapping")

    # The installer could not create our fields: what an admin must create, and the tenant held pending.
    await expect(page.locator("#install-state")).to_have_text("manual_steps")
    manual = page.locator("#install-fields tr", has_text="crm_sor_idempotency_key").filter(has_text="lead")
    await expect(manual).to_contain_text("create a text field (255 characters) with the API name "
                                         "crm_sor_idempotency_key marked unique")

    # Read the CRM's fields: labels, types and picklist values beside our keys.
    await expect(page.locator("#check-result")).to_have_text("Not read from the CRM yet.")
    await page.get_by_role("button", name="Check against the CRM").click()
    await expect(page.get_by_role("status")).to_contain_text("every mapped field exists")
    await page.get_by_role("navigation", name="Objects").get_by_role("link", name="lead").click()
    await expect(page.get_by_role("heading", level=2, name="Keys and CRM fields: lead")).to_be_visible()
    budget = page.locator("#field-lead-budget_aed")
    await expect(budget).to_contain_text("Budget (AED)")
    await expect(budget).to_contain_text("number")
    await expect(budget).to_contain_text("custom")
    await expect(page.locator("#field-lead-preferred_area")).to_contain_text("Marina, Downtown, JLT")
    await expect(page.locator("#field-lead-hs_lead_status")).to_contain_text("8 values")  # folded: <details>
    await expect(page.locator("#field-lead-lastname")).to_contain_text("lead.last_name")  # mapped from

    # A mistyped CRM field: refused with the closest real ones; the form keeps what was typed.
    await page.get_by_label("Direction").select_option(label="write and read")
    await page.get_by_label("Canonical key").fill("lead.budget_max")
    await page.get_by_label("CRM field (API name)").fill("budgt_aed")
    await page.get_by_role("button", name="Save mapping").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("lead has no field budgt_aed in this CRM")
    await expect(alert).to_contain_text("Closest fields: budget_aed")
    await expect(page.locator(".suggestions li").first).to_contain_text("budget_aed — Budget (AED)")
    await expect(page.get_by_label("Canonical key")).to_have_value("lead.budget_max")
    await expect(page.get_by_label("CRM field (API name)")).to_have_value("budgt_aed")
    await expect(page.get_by_label("Direction")).to_have_value("write,read")
    await shot(page, "17-mapping-unknown-field")

    # The suggestion, from the keyboard: the override is saved for both directions.
    await page.get_by_role("button", name="Use budget_aed").focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status")).to_have_text("Mapped lead.budget_max to budget_aed (write and read).")
    row = page.locator("table.keys tr", has_text="lead.budget_max")
    await expect(row).to_contain_text("budget_aed")
    await expect(row).to_contain_text("Budget (AED) · number")
    await expect(row).to_contain_text("override")
    await expect(page.locator("#field-lead-budget_aed")).to_contain_text("lead.budget_max")
    mapped = await _json_mapping(console)
    assert {"kind": "write", "key": "lead.budget_max", "provider_field": "budget_aed", "source": "override"} in mapped
    assert {"kind": "read", "key": "lead.budget_max", "provider_field": "budget_aed", "source": "override"} in mapped

    # The app gets its scopes: the installer creates our fields and the tenant goes active.
    console.hubspot.schema_write = True
    await page.get_by_role("button", name="Run the installer").click()
    await expect(page.get_by_role("status")).to_contain_text("every field exactly-once create needs is in the CRM")
    await expect(page.locator("#install-state")).to_have_text("complete")
    await expect(page.locator("#install-fields tr", has_text="crm_sor_fingerprint").first).to_contain_text("created")
    await expect(page.locator("nav .badge")).to_have_text("active")

    # Preview: a value the picklist cannot hold is named with the CRM's values; the sample stays in the form.
    sample = "last_name: Ng\nbudget_max: 1,250,000\npreferred_area: Atlantis\nmove_in: next spring"
    await page.get_by_label("Object", exact=True).select_option("lead")
    await page.get_by_label("Sample record").fill(sample)
    await page.get_by_role("button", name="Preview").click()
    await expect(page.get_by_role("alert")).to_contain_text("Some values do not fit the CRM's fields")
    await expect(page.locator("#preview-problems")).to_contain_text("Allowed: Marina, Downtown, JLT")
    await expect(page.get_by_label("Sample record")).to_have_value(sample)
    await page.get_by_label("Sample record").fill(sample.replace("Atlantis", "marina"))
    await page.get_by_role("button", name="Preview").click()
    payload = page.locator("#preview-payload")
    await expect(payload.locator("tr", has_text="budget_aed")).to_contain_text("1250000")  # a number, not text
    await expect(payload.locator("tr", has_text="preferred_area")).to_contain_text('"Marina"')  # the CRM's spelling
    await expect(payload.locator("tr", has_text="lastname")).to_contain_text('"Ng"')
    await expect(payload.locator("tr", has_text="message")).to_contain_text("move_in: next spring")  # kept, not lost
    await expect(payload).not_to_contain_text("budget_max")
    await shot(page, "11-mapping")

    # Remove the override: the key is unmapped again (a lead keeps it in its message).
    await page.get_by_role("button", name="Remove the override of lead.budget_max").click()
    await expect(page.get_by_role("status")).to_contain_text("Removed the override of lead.budget_max")
    await expect(page.locator("table.keys tr", has_text="lead.budget_max")).to_have_count(0)
    assert not [e for e in await _json_mapping(console) if e["key"] == "lead.budget_max"]


async def _json_mapping(console: Console) -> list[dict[str, str]]:
    """The effective mapping as the JSON operator route answers it."""
    headers = {"Authorization": f"Bearer {console.operator_token(console.hubspot_tenant)}"}
    async with httpx.AsyncClient(base_url=console.base_url, headers=headers) as operator:
        answer = await operator.get(f"/api/operator/tenants/{console.hubspot_tenant}/mapping")
    assert answer.status_code == 200, answer.text
    entries: list[dict[str, str]] = answer.json()["entries"]
    return entries
