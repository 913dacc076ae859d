"""Per-slug harness for the contract suite: a driver wired to its sandbox, plus provider-neutral helpers.

A new driver joins the contract suite with a registry line, a sandbox and one entry in HARNESSES.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from drivers.auth import GrantTokenSource, TokenSet
from drivers.base import BaseDriver, CrmObject
from drivers.registry import get_driver_class
from sandboxes import hubspot as hubspot_sandbox
from sandboxes import salesforce as salesforce_sandbox
from sandboxes.athenahealth import app as athena_sandbox
from sandboxes.common import SandboxState
from sandboxes.zoho import app as zoho_sandbox
from sandboxes.zoho.state import KEY_FIELD as ZOHO_KEY


class FaultTransport(httpx.AsyncBaseTransport):
    """Wraps the sandbox transport to add what a server cannot: client-side timeouts."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.timeout_next = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.timeout_next > 0:
            self.timeout_next -= 1
            raise httpx.ReadTimeout("timed out", request=request)
        return await self.inner.handle_async_request(request)


@dataclass
class Harness:
    slug: str
    driver: BaseDriver
    state: SandboxState
    source: GrantTokenSource
    secret: dict[str, Any]  # the credential blob as a vault would hold it now (refresh tokens rotate into it)
    transport: FaultTransport
    token_path: str
    seed: Callable[[CrmObject, dict[str, Any]], str]  # add a record straight into the sandbox, return its id
    create_fields: Callable[[CrmObject, int], dict[str, Any]]  # minimal valid create fields, varied by n
    customer_fields: Callable[[str, str, str], dict[str, Any]]  # (last name, phone, email) -> fields
    update_field: dict[CrmObject, str]  # a writable field per object, for partial-update checks
    text_field: dict[CrmObject, str]  # a field free-text search looks at
    create_route: str  # the sandbox route whose lost response the idempotency test simulates
    records_with_key: Callable[[CrmObject, str], int]  # live sandbox records carrying an idempotency key
    extra: dict[str, Any] = field(default_factory=dict)
    probe: CrmObject = CrmObject.DEAL  # a readable, creatable, searchable object for the provider-neutral tests
    keyed: CrmObject = CrmObject.LEAD  # the object the idempotent-create tests create under a key
    creatable: frozenset[CrmObject] = frozenset(
        {CrmObject.CUSTOMER, CrmObject.LEAD, CrmObject.DEAL, CrmObject.CASE, CrmObject.NOTE})
    deletable: CrmObject | None = CrmObject.DEAL  # an object delete_record removes (None: the provider deletes none)
    refused_code: str = "invalid_grant"  # the provider code of a refused token grant
    record_urls: bool = True  # False: the provider has no web link for a record

    @property
    def token_calls(self) -> int:
        return self.state.calls[f"POST {self.token_path}"]

    def cap_pages(self, size: int) -> None:
        """Pages of at most `size` records: the sandbox's cap, and the page size a driver asks for where the
        provider has no server-side cap (Odoo's `limit`)."""
        self.state.knobs.page_size_cap = size
        self.driver.config["page_size"] = size


@asynccontextmanager
async def _wire(
    slug: str, app: Any, base_url: str, token_path: str, config: dict[str, Any], expires_in: int | None, *,
    secret: dict[str, Any] | None = None, **spec: Any
) -> AsyncIterator[Harness]:
    """The driver as production builds it (`build_auth` over a token source calling `grant_token`), with its
    token calls and API calls both reaching the sandbox in-process.

    `secret` is the provider's credential blob (default: an OAuth pair the sandbox issued); the token source
    is in memory here, where the vault would persist it.
    """
    state: SandboxState = app.state.sandbox
    transport = FaultTransport(httpx.ASGITransport(app=app))
    cls = get_driver_class(slug)
    creds = state.tokens.credentials()
    blob = dict(secret or {"auth": "oauth2", "access_token": creds.access_token, "refresh_token": creds.refresh_token})
    config = {"token_url": f"{base_url}{token_path}", **config}
    async with (
        httpx.AsyncClient(transport=transport) as token_http,
        httpx.AsyncClient(base_url=base_url, transport=transport) as client,
    ):
        async def grant() -> TokenSet:
            tokens = await cls.grant_token(token_http, blob, config, (creds.client_id, creds.client_secret))
            blob["access_token"] = tokens.access_token
            if tokens.refresh_token:
                blob["refresh_token"] = tokens.refresh_token
            return tokens

        source = GrantTokenSource(grant, access_token=blob.get("access_token"), expires_in=expires_in)
        client.auth = cls.build_auth(blob, config, lambda: source)
        driver = cls(client, config)
        yield Harness(slug, driver, state, source, blob, transport, token_path, **spec)


@asynccontextmanager
async def hubspot() -> AsyncIterator[Harness]:
    app = hubspot_sandbox.create_app()
    state: hubspot_sandbox.HubSpotState = app.state.sandbox.instant_search()  # the contract is not about lag
    types = {CrmObject.CUSTOMER: "contacts", CrmObject.LEAD: "contacts", CrmObject.DEAL: "deals"}
    types |= {CrmObject.CASE: "tickets", CrmObject.NOTE: "notes"}

    def seed(obj: CrmObject, fields: dict[str, Any]) -> str:
        return state.add(types[obj], fields).id

    def create_fields(obj: CrmObject, n: int) -> dict[str, Any]:
        return {
            CrmObject.CUSTOMER: {"firstname": f"Ann{n}", "lastname": "Lee", "email": f"ann{n}@example.com"},
            CrmObject.LEAD: {"firstname": f"Lou{n}", "lastname": "Park", "email": f"lou{n}@example.com"},
            CrmObject.DEAL: {"dealname": f"Deal {n}", "amount": "1000", "dealstage": "appointmentscheduled"},
            CrmObject.CASE: {"subject": f"Case {n}", "content": "Leaky tap", "hs_pipeline_stage": "1"},
            CrmObject.NOTE: {"hs_note_body": f"Note {n}", "hs_timestamp": "2026-01-01T00:00:00.000Z"},
        }[obj]

    def customer_fields(last: str, phone: str, email: str) -> dict[str, Any]:
        return {"firstname": "Ann", "lastname": last, "phone": phone, "email": email}

    def records_with_key(obj: CrmObject, key: str) -> int:
        rows = state.records.get(types[obj], {}).values()
        return sum(1 for r in rows if not r.archived and r.properties.get("crm_sor_idempotency_key") == key)

    config = {"portal_id": state.portal_id}
    async with _wire(
        "hubspot",
        app,
        "https://api.hubapi.com",
        "/oauth/v3/token",
        config,
        1800,
        seed=seed,
        create_fields=create_fields,
        customer_fields=customer_fields,
        update_field={
            CrmObject.CUSTOMER: "city",
            CrmObject.DEAL: "description",
            CrmObject.CASE: "hs_ticket_priority",
        },
        text_field={CrmObject.CUSTOMER: "lastname", CrmObject.DEAL: "dealname", CrmObject.CASE: "subject"},
        create_route="POST /crm/v3/objects/{object_type}",
        records_with_key=records_with_key,
    ) as harness:
        yield harness


@asynccontextmanager
async def salesforce() -> AsyncIterator[Harness]:
    app = salesforce_sandbox.create_app()
    state: salesforce_sandbox.SalesforceState = app.state.sandbox
    sobjects = {CrmObject.CUSTOMER: "Contact", CrmObject.LEAD: "Lead", CrmObject.DEAL: "Opportunity"}
    sobjects |= {CrmObject.CASE: "Case", CrmObject.NOTE: "Task", CrmObject.APPOINTMENT: "Event"}

    def seed(obj: CrmObject, fields: dict[str, Any]) -> str:
        return str(state.add(sobjects[obj], fields)["Id"])

    def create_fields(obj: CrmObject, n: int) -> dict[str, Any]:
        samples: dict[CrmObject, dict[str, Any]] = {
            CrmObject.CUSTOMER: {"FirstName": f"Ann{n}", "LastName": "Lee", "Email": f"ann{n}@example.com"},
            CrmObject.LEAD: {"FirstName": f"Lou{n}", "LastName": "Park", "Company": "Acme"},
            CrmObject.DEAL: {"Name": f"Deal {n}", "StageName": "Prospecting", "CloseDate": "2026-12-31"},
            CrmObject.CASE: {"Subject": f"Case {n}", "Description": "Leaky tap", "Status": "New"},
            CrmObject.NOTE: {"Subject": f"Call {n}", "Description": "Transcript"},
            CrmObject.APPOINTMENT: {
                "Subject": f"Viewing {n}",
                "ActivityDateTime": "2026-12-01T15:00:00.000+0000",
                "DurationInMinutes": 30,
            },
        }
        return samples[obj]

    def customer_fields(last: str, phone: str, email: str) -> dict[str, Any]:
        return {"FirstName": "Ann", "LastName": last, "Phone": phone, "Email": email}

    def records_with_key(obj: CrmObject, key: str) -> int:
        return sum(1 for r in state.live(sobjects[obj]) if r.get("CrmSorKey__c") == key)

    base = state.instance_url
    config = {"instance_url": base}
    async with _wire(
        "salesforce",
        app,
        base,
        "/services/oauth2/token",
        config,
        None,
        seed=seed,
        create_fields=create_fields,
        customer_fields=customer_fields,
        update_field={
            CrmObject.CUSTOMER: "Title",
            CrmObject.DEAL: "Description",
            CrmObject.CASE: "Priority",
        },
        text_field={CrmObject.CUSTOMER: "LastName", CrmObject.DEAL: "Name", CrmObject.CASE: "Subject"},
        create_route="PATCH /services/data/{version}/sobjects/{sobject}/{field}/{value}",
        records_with_key=records_with_key,
    ) as harness:
        yield harness


# ----- issue 11: Zoho and athenahealth ----------------------------------------------------------------


@asynccontextmanager
async def zoho() -> AsyncIterator[Harness]:
    app = zoho_sandbox.create_app()
    state: Any = app.state.sandbox
    modules = {CrmObject.CUSTOMER: "Contacts", CrmObject.LEAD: "Leads", CrmObject.DEAL: "Deals",
               CrmObject.CASE: "Cases", CrmObject.NOTE: "Notes"}

    def create_fields(obj: CrmObject, n: int) -> dict[str, Any]:
        return {
            CrmObject.CUSTOMER: {"First_Name": f"Ann{n}", "Last_Name": "Lee", "Email": f"ann{n}@example.com"},
            CrmObject.LEAD: {"First_Name": f"Lou{n}", "Last_Name": "Park", "Company": "Acme"},
            CrmObject.DEAL: {"Deal_Name": f"Deal {n}", "Stage": "Qualification", "Amount": 1000},
            CrmObject.CASE: {"Subject": f"Case {n}", "Description": "Leaky tap", "Status": "New"},
        }[obj]

    async with _wire(
        "zoho", app, "https://www.zohoapis.com", "/oauth/v2/token", {}, 3600,
        seed=lambda obj, fields: str(state.add(modules[obj], fields)["id"]),
        create_fields=create_fields,
        customer_fields=lambda last, phone, email: {"First_Name": "Ann", "Last_Name": last, "Phone": phone,
                                                    "Email": email},
        update_field={CrmObject.CUSTOMER: "Title", CrmObject.DEAL: "Description", CrmObject.CASE: "Priority"},
        text_field={CrmObject.CUSTOMER: "Last_Name", CrmObject.DEAL: "Deal_Name", CrmObject.CASE: "Subject"},
        create_route="POST /crm/v8/{module}/upsert",
        records_with_key=lambda obj, key: sum(1 for r in state.live(modules[obj]) if r.get(ZOHO_KEY) == key),
        refused_code="invalid_code",  # Zoho answers a revoked refresh token with HTTP 200 {"error":"invalid_code"}
    ) as harness:
        yield harness


@asynccontextmanager
async def athenahealth() -> AsyncIterator[Harness]:
    app = athena_sandbox.create_app()
    state: Any = app.state.sandbox
    creds = state.tokens.credentials()
    person = {"dob": "01/15/1985", "departmentid": "1"}

    def seed(obj: CrmObject, fields: dict[str, Any]) -> str:
        return str(state.add_patient(fields)["patientid"]) if obj is CrmObject.CUSTOMER else str(
            state.add_slot(**fields)["appointmentid"])

    def records_with_key(obj: CrmObject, key: str) -> int:
        return sum(1 for p in state.patients.values() if any(
            c["customfieldid"] == "9001" and c["customfieldvalue"] == key for c in p["customfields"]))

    async with _wire(
        "athenahealth", app, "https://api.preview.platform.athenahealth.com", "/oauth2/v1/token",
        {"practice_id": state.practice_id, "environment": "preview"}, 3600,
        secret={"auth": "token", "client_id": creds.client_id, "client_secret": creds.client_secret,
                "access_token": creds.access_token},
        seed=seed,
        create_fields=lambda obj, n: {"firstname": f"Ann{n}", "lastname": "Lee",
                                      "email": f"ann{n}@example.com"} | person,
        customer_fields=lambda last, phone, email: {"firstname": "Ann", "lastname": last, "mobilephone": phone,
                                                    "email": email} | person,
        update_field={CrmObject.CUSTOMER: "city"},
        text_field={CrmObject.CUSTOMER: "lastname"},
        # The last step of a patient create (our key into the custom field) answered but lost.
        create_route="PUT /v1/{practiceid}/patients/{patientid}/customfields",
        records_with_key=records_with_key,
        probe=CrmObject.CUSTOMER, keyed=CrmObject.CUSTOMER, refused_code="invalid_client", deletable=None,
        creatable=frozenset({CrmObject.CUSTOMER, CrmObject.APPOINTMENT}), record_urls=False,
    ) as harness:
        yield harness

# --- issue 13: Odoo, generic REST, custom webhook (a separate block and module: merges stay line-local) -----
from tests.unit.drivers.harness_13 import (  # noqa: E402
    custom_webhook,
    generic_rest_flat,
    generic_rest_jsonapi,
    odoo,
)

HARNESSES: dict[str, Callable[[], AbstractAsyncContextManager[Harness]]] = {
    "hubspot": hubspot,
    "salesforce": salesforce,
    "zoho": zoho,
    "athenahealth": athenahealth,
    "odoo": odoo,
    "custom_webhook": custom_webhook,
    # One configurable driver, contract-tested as two differently shaped APIs: "<slug>:<variant>".
    "generic_rest:flat": generic_rest_flat,
    "generic_rest:jsonapi": generic_rest_jsonapi,
}


# issue 12: the vertical CRMs' harnesses live beside this module (kept under the module size limit) and add
# themselves to HARNESSES when imported; importing them here makes HARNESSES complete whichever comes first.
import tests.unit.drivers.harness_vertical  # noqa: E402, F401

# Drivers whose credential is refreshed or re-issued through a token grant (the refresh tests run over these;
# a provider with static keys, like Odoo, has no grant: a revoked key is an auth error, tested for every driver).
STATIC_CREDENTIALS = frozenset({"odoo", "custom_webhook", "generic_rest:flat", "generic_rest:jsonapi"})
REFRESHING: frozenset[str] = frozenset(HARNESSES) - STATIC_CREDENTIALS
