"""The operator console in a real browser (Playwright driving Debian's headless Chromium) against the served app,
the real worker, relay and vault, and HubSpot and Tekmetric sandboxes on loopback.

One operator's kickoff, end to end: sign in, connect a HubSpot tenant (a wrong private-app token fails with the
provider's reason, then the OAuth flow connects it), test the connection (fail while HubSpot is down, then pass),
redrive an incident and watch it resolve, connect a Tekmetric tenant with its generated form, run an erasure and
resolve its divergent record, sign out. Each page is saved as a screenshot (tests/support/console.py).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.async_api import Browser, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store import incidents
from store.base import utcnow
from store.models import Appointment, Customer
from store.outbound_models import CallRequest, InboundCrmEvent
from tests.support.console import WAIT, Console, shot, sign_in
from tests.support.lifecycle import eventually, row_of

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
PHONE = "+14155550177"


async def test_an_operator_kickoff_in_the_browser(browser: Browser, console: Console,
                                                  sessions: async_sessionmaker[AsyncSession]) -> None:
    page = await (await browser.new_context()).new_page()
    await sign_in(page, console, "not-a-token")
    await expect(page.get_by_role("alert")).to_contain_text("Sign-in refused")  # the answer page has loaded
    await page.keyboard.press("Tab")  # keyboard users first reach the skip link
    await expect(page.locator(":focus")).to_have_text("Skip to content")
    await expect(page.get_by_role("alert")).to_contain_text("Sign-in refused")
    await shot(page, "01-sign-in")
    await page.get_by_label("Operator credential").fill(console.operator_token())
    await page.get_by_role("button", name="Sign in").click()
    cookies = {c["name"]: c for c in await page.context.cookies()}
    session_cookie = cookies["__Host-crm_console"]
    assert session_cookie["secure"] and session_cookie["httpOnly"] and session_cookie["sameSite"] == "Lax"

    # Tenants: the picker lists them with status, provider, backlog and incidents; it finds one by name.
    await page.get_by_label("Find a tenant").fill(console.run)
    await page.get_by_role("button", name="Find").click()
    await expect(page.get_by_role("row").filter(has_text=console.run)).to_have_count(3)
    hubspot_row = page.get_by_role("row").filter(has_text=f"Acme Realty {console.run}")
    await expect(hubspot_row).to_contain_text("pending")
    await expect(hubspot_row).to_contain_text("hubspot")
    await expect(hubspot_row.get_by_role("link", name="Temporal UI ↗")).to_have_attribute(
        "href", re.compile(f"CrmTenant%3D%22{console.hubspot_tenant}%22"))
    await shot(page, "02-tenants")

    # Connect: a wrong private-app token fails with HubSpot's reason and the tenant stays pending…
    await hubspot_row.get_by_role("link", name=re.compile("Acme Realty")).click()
    await page.get_by_role("link", name="Connect", exact=True).click()
    await page.get_by_label("Access token").fill("pat-na1-00000000-wrong")
    await page.get_by_role("button", name="Save and test").click()
    await expect(page.get_by_role("alert")).to_contain_text("The connection test failed")
    await expect(page.get_by_role("alert")).to_contain_text("provider_code=INVALID_AUTHENTICATION")  # HubSpot's
    await expect(page.locator("#connection-status")).to_have_text("pending")
    await shot(page, "03-connect-failed")
    # …then the OAuth button runs HubSpot's authorize flow and lands back here, tested and active.
    await page.get_by_role("button", name="Connect with hubspot").click()
    await expect(page).to_have_url(f"{console.base_url}/console/t/{console.hubspot_tenant}/connect")
    await expect(page.get_by_role("status")).to_contain_text("Connected through the provider's sign-in")
    await expect(page.locator("#connection-status")).to_have_text("active")
    assert console.hubspot.calls["GET /oauth/authorize"] == 1
    await shot(page, "04-connect-oauth")

    # Test connection: fails with the provider's reason while HubSpot answers 503, passes once it recovers.
    console.hubspot.knobs.fail_next = 10**6
    await page.get_by_role("button", name="Test connection").click()
    await expect(page.get_by_role("alert")).to_contain_text("The connection test failed")
    await expect(page.get_by_role("alert")).to_contain_text("HTTP 503")
    await expect(page.locator("#connection-status")).to_have_text("pending")
    await shot(page, "05-test-failed")
    console.hubspot.knobs.fail_next = 0
    await page.get_by_role("button", name="Test connection").click()
    await expect(page.get_by_role("status")).to_contain_text("the test passed")
    await expect(page.locator("#connection-status")).to_have_text("active")

    # An incident: a customer whose CRM write failed (the 24 h escalation is opened here rather than waited for).
    row_id = await _failed_write(console, sessions)
    # Sync: the record by id, its attempts and last error code (and no content).
    await page.get_by_role("link", name="Sync").click()
    await page.get_by_label("Find a record by id").fill(str(row_id))
    await page.get_by_role("button", name="Find").click()
    await expect(page.locator("#record-error")).to_have_text("unavailable:503")
    await expect(page.locator("#record-attempts")).to_have_text("1")
    await expect(page.locator("main")).not_to_contain_text("Marie")
    await shot(page, "09-sync")
    await page.get_by_role("link", name="Incidents").click()
    incident_row = page.locator("tr", has_text="crm_sync_failure")
    await expect(incident_row).to_contain_text("unavailable:503")
    await expect(incident_row.locator("td").nth(3)).to_have_text("1")  # the rows it holds
    await shot(page, "06-incidents-open")
    await incident_row.get_by_role("link", name="Redrive…").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Redrive this incident?")
    await shot(page, "07-redrive-confirm")
    await page.get_by_role("button", name="Yes, redrive now").click()
    await expect(page.get_by_role("status")).to_contain_text("Redrive queued")
    await expect(page.locator("tr", has_text="crm_sync_failure")).to_have_count(0, timeout=WAIT)  # resolved
    await page.get_by_role("link", name="Resolved").click()
    await expect(page.locator("tr", has_text="crm_sync_failure")).to_contain_text("resolved")
    await shot(page, "08-incidents-resolved")

    # Sync, after the redrive: the record is in the CRM; its attempts are kept.
    await page.get_by_role("link", name="Sync").click()
    await page.get_by_label("Find a record by id").fill(str(row_id))
    await page.get_by_role("button", name="Find").click()
    await expect(page.locator("#record-state")).to_have_text("synced")
    await expect(page.locator("main")).not_to_contain_text("Marie")  # the customer's name is content
    event_id = await _webhook_activity(console, sessions)
    await page.get_by_role("link", name="Webhooks & triggers").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Webhooks & triggers")
    await expect(page.locator("tr", has_text=event_id)).to_contain_text("created")
    await expect(page.locator("tr", has_text="New web lead")).to_contain_text("new_web_lead_callback")
    await expect(page.locator("tr", has_text="quiet_hours")).to_contain_text("deferred")
    await shot(page, "10-webhooks")  # 11-mapping and 17: test_mapping.py

    # Erasure on Tekmetric: connect with the form generated from its driver, then erase a customer it cannot delete.
    customer_crm_id, appointment_crm_id = await _tekmetric_subject(console, sessions)
    await page.goto(f"{console.base_url}/console/t/{console.tekmetric_tenant}/connect")
    await page.get_by_label("Client id").fill(console.tekmetric.tokens.client_id)
    await page.get_by_label("Client secret").fill(console.tekmetric.tokens.client_secret)
    await page.get_by_label("Shop id").fill("0")  # the driver's form declares shop_id > 0
    await page.get_by_role("button", name="Save and test").click()
    await expect(page.get_by_role("alert")).to_contain_text("shop_id: Input should be greater than 0")
    await expect(page.get_by_label("Client id")).to_have_value(console.tekmetric.tokens.client_id)  # kept
    await expect(page.get_by_label("Client secret")).to_have_value("")  # a secret is never echoed
    await page.get_by_label("Client secret").fill(console.tekmetric.tokens.client_secret)
    await page.get_by_label("Shop id").fill(str(console.tekmetric.shop_id))
    await page.get_by_label("Environment").select_option("sandbox")
    await page.get_by_role("button", name="Save and test").click()
    await expect(page.locator("#connection-status")).to_have_text("active")
    await shot(page, "12-connect-form")

    await page.get_by_role("link", name="Erasure").click()
    await page.get_by_label("Email").fill("not-an-email")
    await page.get_by_role("button", name="Start erasure").click()
    await expect(page.get_by_role("alert")).to_contain_text("not an email address")
    await expect(page.get_by_label("Email")).to_have_value("not-an-email")  # what the operator typed stays
    await page.get_by_label("Email").fill("")
    await page.get_by_label("Phone").fill(PHONE)
    await page.get_by_role("button", name="Start erasure").click()
    await expect(page.locator("#erasure-status")).to_have_text("needs_attention", timeout=WAIT)
    customer_outcome = page.locator("tr", has_text=customer_crm_id).filter(has_text="customer")
    await expect(customer_outcome).to_contain_text("divergent")
    appointment_outcome = page.locator("tr", has_text=appointment_crm_id).filter(has_text="appointment")
    await expect(appointment_outcome).to_contain_text("archived")  # Tekmetric keeps it with a deletedDate…
    await expect(appointment_outcome).to_contain_text("never purged by the provider")  # …for good
    await shot(page, "13-erasure-outcomes")
    await appointment_outcome.get_by_role("link", name="Record manual deletion…").click()
    await page.get_by_label("I deleted this record at tekmetric").check()
    await page.get_by_role("button", name="Record the deletion").click()
    await expect(page.locator("#erasure-status")).to_have_text("needs_attention")  # the customer still needs it
    await customer_outcome.get_by_role("link", name="Record manual deletion…").click()
    await page.get_by_role("button", name="Record the deletion").click()  # the box is required: nothing happens
    await expect(page.get_by_role("heading", level=1)).to_have_text("Record a manual deletion")
    await page.get_by_label("I deleted this record at tekmetric").check()
    await shot(page, "14-manual-deletion")
    await page.get_by_role("button", name="Record the deletion").click()
    await expect(page.locator("#erasure-status")).to_have_text("completed")
    await expect(page.locator("tr", has_text=customer_crm_id)).to_contain_text("deleted")
    await shot(page, "15-erasure-completed")

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_have_text("You are signed out.")
    await page.goto(f"{console.base_url}/console/t/{console.hubspot_tenant}/incidents")
    await expect(page).to_have_url(re.compile(r"/console/login\?next="))


async def _failed_write(console: Console, sessions: async_sessionmaker[AsyncSession]) -> uuid.UUID:
    """A customer whose first CRM write failed (HubSpot 503), with the incident the sweep opens after 24 hours."""
    console.hubspot.knobs.fail_next = 10**6
    async with httpx.AsyncClient(base_url=console.base_url, headers=console.agent_headers(console.hubspot_tenant)
                                 ) as agent:
        created = await agent.post("/api/agent/customers", json={"name": "Marie Curie", "phone": "+14155550188"})
    assert created.status_code in (200, 201, 202), created.text
    row_id = uuid.UUID(created.json()["id"])

    async def failed_once() -> object:
        row = await row_of(sessions, "customers", console.hubspot_tenant, row_id)
        return row if row is not None and row.sync_attempts >= 1 else None

    await eventually(failed_once, within=60)
    async with sessions() as session, session.begin():
        # as the mirror's escalation would 24 h after the insert
        assert await incidents.escalate_tenant(session, console.hubspot_tenant, utcnow() + timedelta(seconds=1)) == 1
    console.hubspot.knobs.fail_next = 0  # HubSpot recovers; the lifecycle's next try is an hour away
    return row_id


async def _webhook_activity(console: Console, sessions: async_sessionmaker[AsyncSession]) -> str:
    """A trigger rule (through the operator API), an inbound event and a deferred call request as the webhook
    pipeline stores them (ids, kinds and reason codes only); the event's id."""
    headers = {"Authorization": f"Bearer {console.operator_token(console.hubspot_tenant)}"}
    async with httpx.AsyncClient(base_url=console.base_url, headers=headers) as operator:
        created = await operator.post(f"/api/operator/tenants/{console.hubspot_tenant}/triggers", json={
            "name": "New web lead", "object": "lead", "kinds": ["created"], "purpose": "new_web_lead_callback"})
    assert created.status_code == 201, created.text
    event_id = f"evt-{uuid.uuid4().hex[:12]}"
    async with sessions() as session, session.begin():
        event = InboundCrmEvent(tenant_id=console.hubspot_tenant, provider="hubspot", event_id=event_id,
                                event_type="contact.creation", object="lead", external_id="901", kind="created",
                                status="processed", changed_fields=[])
        session.add(event)
        await session.flush()
        session.add(CallRequest(tenant_id=console.hubspot_tenant, event_row_id=event.id,
                                trigger_id=uuid.UUID(created.json()["id"]), provider="hubspot", object="lead",
                                external_id="901", purpose="new_web_lead_callback", channel="voice",
                                status="deferred", reason="quiet_hours", time_zones=["America/New_York"]))
    return event_id


async def _tekmetric_subject(console: Console, sessions: async_sessionmaker[AsyncSession]) -> tuple[str, str]:
    """A customer and appointment in the Tekmetric shop, and our synced copy of the customer."""
    customer = console.tekmetric.add_customer({"firstName": "Dana", "lastName": "Erase", "email": ["dana@example.com"],
                                               "phones": [{"number": PHONE, "primary": True}]})
    booking = console.tekmetric.add_appointment({"customerId": customer["id"], "title": "Brake check",
                                                 "startTime": "2026-12-01T15:00:00Z",
                                                 "endTime": "2026-12-01T16:00:00Z"})
    async with sessions() as session, session.begin():
        local = Customer(tenant_id=console.tekmetric_tenant, name="Dana Erase", phone=PHONE,
                         crm_external_id=str(customer["id"]), sync_state="synced", synced_at=datetime.now(UTC))
        session.add(local)
        await session.flush()
        session.add(Appointment(tenant_id=console.tekmetric_tenant, customer_id=local.id,
                                starts_at=datetime(2026, 12, 1, 15, tzinfo=UTC), crm_external_id=str(booking["id"]),
                                sync_state="synced", synced_at=datetime.now(UTC)))
    return str(customer["id"]), str(booking["id"])
