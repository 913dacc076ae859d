"""What the console refuses, in a real browser: a form without its CSRF token, a pinned operator reaching for another
tenant, a forged sign-in, a signed-out session cookie; and what it needs no script for (JavaScript off, keyboard
only)."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.support.console import Console, shot, sign_in

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def test_csrf_cross_tenant_and_signed_out_requests_are_refused(browser: Browser, console: Console) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in(page, console, console.operator_token(console.hubspot_tenant, subject="pinned.manager"))
    await expect(page).to_have_url(f"{console.base_url}/console/t/{console.hubspot_tenant}/")
    await page.goto(f"{console.base_url}/console/")
    await expect(page.get_by_role("row").filter(has_text="Acme Realty")).to_have_count(1)
    await expect(page.locator("main")).not_to_contain_text("Other Clinic")  # the picker shows only its tenant
    await page.get_by_label("Find a tenant").fill("Other Clinic")
    await page.get_by_role("button", name="Find").click()
    await expect(page.get_by_role("row").filter(has_text="Other Clinic")).to_have_count(0)

    # Cross-tenant: another tenant's pages and forms are a 404, even with a valid CSRF token.
    other = f"{console.base_url}/console/t/{console.other_tenant}"
    answer = await page.goto(f"{other}/incidents")
    assert answer is not None and answer.status == 404
    await expect(page.get_by_role("alert")).to_have_text("No such tenant.")
    await page.goto(f"{console.base_url}/console/t/{console.hubspot_tenant}/connect")
    csrf = await page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert csrf
    refused = await context.request.post(f"{other}/connect/test", form={"csrf_token": csrf}, max_redirects=0)
    assert refused.status == 404
    assert (await context.request.get(f"{other}/mapping")).status == 404
    refused = await context.request.post(f"{other}/mapping/override", max_redirects=0, form={
        "csrf_token": csrf, "kind": "write", "key": "lead.budget_max", "provider_field": "amount"})
    assert refused.status == 404

    # CSRF: the same form without its token, or with another, changes nothing.
    before = (await context.request.get(f"{console.base_url}/console/t/{console.hubspot_tenant}/connect")).status
    assert before == 200
    for form in ({}, {"csrf_token": "forged"}):
        for action in ("incidents/redrive", "mapping/override"):
            answer_ = await context.request.post(f"{console.base_url}/console/t/{console.hubspot_tenant}/{action}",
                                                 form=form, max_redirects=0)
            assert answer_.status == 403 and "did not come from the console" in await answer_.text()
    await shot(page, "16-cross-tenant")

    # The sign-in form needs its own token too (login CSRF), and a signed-out session cookie opens nothing.
    fresh = await browser.new_context()
    forged_login = await fresh.request.post(f"{console.base_url}/console/login",
                                            form={"credential": console.operator_token(), "login_token": "x"},
                                            max_redirects=0)
    assert forged_login.status == 403
    session_cookie = next(c for c in await context.cookies() if c["name"] == "__Host-crm_console")
    await page.get_by_role("button", name="Sign out").click()
    async with httpx.AsyncClient(base_url=console.base_url) as raw:
        replayed = await raw.get(f"/console/t/{console.hubspot_tenant}/incidents",
                                 headers={"cookie": f"__Host-crm_console={session_cookie['value']}"})
    assert replayed.status_code == 303 and replayed.headers["location"].startswith("/console/login")


async def test_pages_work_without_javascript_and_from_the_keyboard(browser: Browser, console: Console) -> None:
    page = await (await browser.new_context(java_script_enabled=False)).new_page()
    await page.goto(f"{console.base_url}/console/")
    await page.get_by_label("Operator credential").focus()
    await page.keyboard.type(console.operator_token(console.tekmetric_tenant, subject="keyboard.only"))
    await page.keyboard.press("Tab")  # to the Sign in button
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(f"{console.base_url}/console/t/{console.tekmetric_tenant}/")
    await page.goto(f"{console.base_url}/console/t/{console.tekmetric_tenant}/incidents/redrive")
    await page.get_by_role("button", name="Yes, redrive now").focus()
    await page.keyboard.press("Enter")  # a confirmation is a page and a form, not a script dialog
    await expect(page.get_by_role("status")).to_contain_text("Redrive queued for every open incident")
