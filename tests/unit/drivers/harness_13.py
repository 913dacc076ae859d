"""Contract-suite harnesses for issue 13's drivers (Odoo, generic REST, custom webhook), kept apart from
harness.py so parallel additions merge without touching each other's lines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from drivers.base import CrmObject
from drivers.generic_rest_config import GenericRestForm
from drivers.odoo import MODELS, MODULE, xmlid_name
from sandboxes import generic_rest as rest_sandbox
from sandboxes import webhook_receiver
from sandboxes.odoo import app as odoo_sandbox
from sandboxes.odoo.state import OdooState
from tests.unit.drivers.generic_rest_configs import SINGULAR, flat_config, jsonapi_config
from tests.unit.drivers.harness import Harness, _wire

ODOO_URL = "https://acme.odoo.example"
_LEAD_TYPE = {CrmObject.LEAD: "lead", CrmObject.DEAL: "opportunity"}
# Custom webhook and generic REST speak the same plain field names (their defaults in the field catalog).
PLAIN: dict[str, Any] = {
    "customer_fields": lambda last, phone, email: {"first_name": "Ann", "last_name": last, "phone": phone,
                                                   "email": email},
    "update_field": {CrmObject.CUSTOMER: "city", CrmObject.DEAL: "description", CrmObject.CASE: "priority"},
    "text_field": {CrmObject.CUSTOMER: "last_name", CrmObject.DEAL: "name", CrmObject.CASE: "subject"},
}


def plain_create_fields(obj: CrmObject, n: int) -> dict[str, Any]:
    return {
        CrmObject.CUSTOMER: {"first_name": f"Ann{n}", "last_name": "Lee", "email": f"ann{n}@example.com"},
        CrmObject.LEAD: {"first_name": f"Lou{n}", "last_name": "Park", "email": f"lou{n}@example.com"},
        CrmObject.DEAL: {"name": f"Deal {n}", "amount": "1000", "stage": "new"},
        CrmObject.CASE: {"subject": f"Case {n}", "description": "Leaky tap", "status": "open"},
        CrmObject.NOTE: {"body": f"Note {n}"},
    }[obj]


def odoo_records_with_key(state: OdooState, obj: CrmObject, key: str) -> int:
    """Live records of `obj` carrying one of our external ids for `key` (whatever the fingerprint)."""
    prefix = xmlid_name(key, "0" * 16)[:33]
    model = MODELS[obj]
    entries = [e for e in state.tables["ir.model.data"].values()
               if e["module"] == MODULE and e["model"] == model and str(e["name"]).startswith(prefix)]
    return sum(1 for e in entries if (state.live(model, e["res_id"]) or {}).get("active", True))


@asynccontextmanager
async def odoo() -> AsyncIterator[Harness]:
    app = odoo_sandbox.create_app()
    state: OdooState = app.state.sandbox

    def seed(obj: CrmObject, fields: dict[str, Any]) -> str:
        values = dict(fields)
        if obj in _LEAD_TYPE:
            values.setdefault("type", _LEAD_TYPE[obj])
        return str(state.add(MODELS[obj], values))

    def create_fields(obj: CrmObject, n: int) -> dict[str, Any]:
        return {
            CrmObject.CUSTOMER: {"name": f"Ann{n} Lee", "email": f"ann{n}@example.com", "phone": "+1 415 555 0100"},
            CrmObject.LEAD: {"name": f"Enquiry {n}", "contact_name": f"Lou{n} Park",
                             "email_from": f"lou{n}@example.com"},
            CrmObject.DEAL: {"name": f"Deal {n}", "expected_revenue": 1000.0 + n},
            CrmObject.NOTE: {"body": f"Note {n}", "model": "res.partner", "res_id": 3, "message_type": "comment"},
        }[obj]

    def customer_fields(last: str, phone: str, email: str) -> dict[str, Any]:
        return {"name": f"Ann {last}", "phone": phone, "email": email}

    secret_holder: dict[str, Any] = {}
    creds = state.tokens.credentials()
    secret_holder.update({"auth": "odoo", "login": state.login, "api_key": creds.access_token})
    config = {"instance_url": ODOO_URL, "database": state.database}
    async with _wire(
        "odoo",
        app,
        ODOO_URL,
        "/jsonrpc",
        config,
        None,
        secret=secret_holder,
        seed=seed,
        create_fields=create_fields,
        customer_fields=customer_fields,
        update_field={CrmObject.CUSTOMER: "function", CrmObject.DEAL: "partner_name"},
        text_field={CrmObject.CUSTOMER: "name", CrmObject.DEAL: "name"},
        create_route="POST /jsonrpc crm.lead.load",
        records_with_key=lambda obj, key: odoo_records_with_key(state, obj, key),
    ) as harness:
        # The version probe and `authenticate` happen once per connection: done here, so call counts in the
        # suite see only the verbs' own calls.
        assert (await harness.driver.test_connection()).ok
        yield harness


HOOK_URL = "https://hooks.partner.example"


@asynccontextmanager
async def custom_webhook() -> AsyncIterator[Harness]:
    app = webhook_receiver.create_app()
    state: webhook_receiver.ReceiverState = app.state.sandbox

    def records_with_key(obj: CrmObject, key: str) -> int:
        return sum(1 for r in state.live(obj.value) if r["key"] == key)

    async with _wire(
        "custom_webhook",
        app,
        HOOK_URL,
        webhook_receiver.PATH,
        {"endpoint_url": f"{HOOK_URL}{webhook_receiver.PATH}"},
        None,
        secret={"auth": "webhook", "signing_secrets": list(state.secrets.held)},
        seed=lambda obj, fields: state.add(obj.value, fields),
        create_fields=plain_create_fields,
        **PLAIN,
        create_route=f"POST {webhook_receiver.PATH} record.create",
        records_with_key=records_with_key,
    ) as harness:
        yield harness


_PLURAL = {v: k for k, v in SINGULAR.items()}


@asynccontextmanager
async def _generic_rest(shape: str) -> AsyncIterator[Harness]:
    app = rest_sandbox.create_app()
    state: rest_sandbox.RestState = app.state.sandbox
    form = GenericRestForm.model_validate((flat_config if shape == "flat" else jsonapi_config)(state))

    def records_with_key(obj: CrmObject, key: str) -> int:
        return sum(1 for r in state.live(shape, _PLURAL[obj.value]) if r.get("crm_key") == key)

    prefix = rest_sandbox.PREFIX[shape]
    async with _wire(
        "generic_rest",
        app,
        form.base_url,
        f"{prefix}/oauth/token",
        form.settings(),
        None,
        secret=form.secret(),
        seed=lambda obj, fields: state.add(shape, _PLURAL[obj.value], fields),
        create_fields=plain_create_fields,
        **PLAIN,
        create_route=f"POST {prefix}/{{objects}}",
        records_with_key=records_with_key,
    ) as harness:
        assert (await harness.driver.test_connection()).ok  # the client-credentials token: before the counts
        yield harness


def generic_rest_flat() -> AbstractAsyncContextManager[Harness]:
    return _generic_rest("flat")


def generic_rest_jsonapi() -> AbstractAsyncContextManager[Harness]:
    return _generic_rest("jsonapi")
