"""Contract-suite harnesses for issue 13's drivers (Odoo, generic REST, custom webhook), kept apart from
harness.py so parallel additions merge without touching each other's lines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from drivers.base import CrmObject
from drivers.odoo import MODELS, MODULE, xmlid_name
from sandboxes.odoo import app as odoo_sandbox
from sandboxes.odoo.state import OdooState
from tests.unit.drivers.harness import Harness, _wire

ODOO_URL = "https://acme.odoo.example"
_LEAD_TYPE = {CrmObject.LEAD: "lead", CrmObject.DEAL: "opportunity"}


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
