"""Contract-suite harnesses of the vertical CRMs (Mindbody, Tekmetric, Toast), registered in harness.HARNESSES.

These providers issue tokens through a client-credentials or login grant, so each harness hands `_wire` the
credential blob the connect form stores plus the token a first grant gave (as the vault holds it afterwards).
Their probe object is the customer (none of them has deals), and the idempotency tests key customers.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from drivers.base import CrmObject
from drivers.mindbody import client_rssid
from drivers.tekmetric import _digest
from drivers.toast import _KEYS, LOGIN_PATH
from sandboxes import mindbody as mindbody_sandbox
from sandboxes import tekmetric as tekmetric_sandbox
from sandboxes import toast as toast_sandbox
from tests.unit.drivers import harness
from tests.unit.drivers.harness import Harness, _wire

_CUSTOMER_ONLY = frozenset({CrmObject.CUSTOMER})


@asynccontextmanager
async def mindbody() -> AsyncIterator[Harness]:
    app = mindbody_sandbox.create_app()
    state: mindbody_sandbox.MindbodyState = app.state.sandbox
    base = "https://api.mindbodyonline.com/public/v6"
    secret = {"auth": "token", "api_key": state.api_key, "username": state.username, "password": state.password,
              "access_token": state.tokens.credentials().access_token}

    def seed(obj: CrmObject, fields: dict[str, Any]) -> str:
        return str(state.add_client(fields)["Id"])

    def create_fields(obj: CrmObject, n: int) -> dict[str, Any]:
        return {"FirstName": f"Ann{n}", "LastName": "Lee", "Email": f"ann{n}@example.com"}

    def customer_fields(last: str, phone: str, email: str) -> dict[str, Any]:
        return {"FirstName": "Ann", "LastName": last, "MobilePhone": phone, "Email": email}

    def records_with_key(obj: CrmObject, key: str) -> int:
        return sum(1 for client in state.clients.values() if client["Id"] == client_rssid(key))

    config = {"site_id": state.site_id, "token_url": base + "/usertoken/issue"}
    async with _wire("mindbody", app, base, mindbody_sandbox.TOKEN_PATH, config, 86400, secret=secret, seed=seed,
                     create_fields=create_fields, customer_fields=customer_fields,
                     update_field={CrmObject.CUSTOMER: "City"}, text_field={CrmObject.CUSTOMER: "LastName"},
                     create_route="POST /public/v6/client/addclient", records_with_key=records_with_key,
                     probe=CrmObject.CUSTOMER, keyed=CrmObject.CUSTOMER, creatable=_CUSTOMER_ONLY, deletable=None,
                     refused_code="DeniedAccess") as harness:
        yield harness


@asynccontextmanager
async def tekmetric() -> AsyncIterator[Harness]:
    app = tekmetric_sandbox.create_app()
    state: tekmetric_sandbox.TekmetricState = app.state.sandbox
    secret = {"auth": "token", "client_id": state.tokens.client_id, "client_secret": state.tokens.client_secret,
              "access_token": state.tokens.credentials().access_token}

    def seed(obj: CrmObject, fields: dict[str, Any]) -> str:
        if obj is CrmObject.CASE:
            return str(state.add_repair_order(fields)["id"])
        if obj is CrmObject.APPOINTMENT:
            return str(state.add_appointment(fields)["id"])
        wire = {k: v for k, v in fields.items() if k not in ("phone", "email")}
        wire["email"] = [fields["email"]] if fields.get("email") else []
        wire["phones"] = [{"number": fields["phone"], "primary": True}] if fields.get("phone") else []
        return str(state.add_customer(wire)["id"])

    def create_fields(obj: CrmObject, n: int) -> dict[str, Any]:
        return {
            # One person's email: Tekmetric has no field to key on, so a reused key is recognised among the
            # customers the request's own email finds (see TekmetricDriver).
            CrmObject.CUSTOMER: {"firstName": f"Ann{n}", "email": "ann@example.com"},
            CrmObject.APPOINTMENT: {"title": f"Oil change {n}", "startTime": "2026-12-01T15:00:00Z",
                                    "endTime": "2026-12-01T16:00:00Z"},
            CrmObject.CASE: {"milesIn": 1000 + n},
        }[obj]

    def customer_fields(last: str, phone: str, email: str) -> dict[str, Any]:
        return {"firstName": "Ann", "lastName": last, "phone": phone, "email": email}

    def records_with_key(obj: CrmObject, key: str) -> int:
        mark = f"[crm-sor create {_digest(key)} "
        return sum(1 for c in state.customers.values() if mark in (c.get("notes") or ""))

    config = {"shop_id": state.shop_id, "environment": "sandbox"}
    async with _wire("tekmetric", app, "https://sandbox.tekmetric.com", tekmetric_sandbox.TOKEN_PATH, config, None,
                     secret=secret, seed=seed, create_fields=create_fields, customer_fields=customer_fields,
                     update_field={CrmObject.CUSTOMER: "lastName", CrmObject.CASE: "keyTag"},
                     text_field={CrmObject.CUSTOMER: "lastName"}, create_route="POST /api/v1/customers",
                     records_with_key=records_with_key, probe=CrmObject.CUSTOMER, keyed=CrmObject.CUSTOMER,
                     creatable=frozenset({CrmObject.CUSTOMER, CrmObject.APPOINTMENT}),
                     deletable=CrmObject.APPOINTMENT, refused_code="invalid_client") as harness:
        yield harness


@asynccontextmanager
async def toast() -> AsyncIterator[Harness]:
    app = toast_sandbox.create_app()
    state: toast_sandbox.ToastState = app.state.sandbox
    # The contract suite expires tokens on purpose and fires 50 calls at once: lift the login and burst
    # limits here; tests/unit/drivers/test_toast.py checks both as Toast enforces them.
    state.logins_per_hour, state.knobs.interval_limit = None, None
    secret = {"auth": "token", "client_id": state.tokens.client_id, "client_secret": state.tokens.client_secret,
              "access_token": state.tokens.credentials().access_token}

    def seed(obj: CrmObject, fields: dict[str, Any]) -> str:
        return str(state.seed_guest(fields)["guid"])

    def create_fields(obj: CrmObject, n: int) -> dict[str, Any]:
        return {"firstName": f"Ann{n}", "lastName": "Lee", "email": f"ann{n}@example.com"}

    def customer_fields(last: str, phone: str, email: str) -> dict[str, Any]:
        return {"firstName": "Ann", "lastName": last, "phone": phone, "email": email}

    def records_with_key(obj: CrmObject, key: str) -> int:
        return int(str(uuid.uuid5(_KEYS, f"{state.restaurant_guid}:{key}")) in state.guests)

    config = {"restaurant_guid": state.restaurant_guid, "environment": "sandbox"}
    async with _wire("toast", app, "https://ws-sandbox-api.eng.toasttab.com", LOGIN_PATH, config, 86400,
                     secret=secret, seed=seed, create_fields=create_fields, customer_fields=customer_fields,
                     update_field={}, text_field={CrmObject.CUSTOMER: "lastName"},
                     create_route="POST /crm/v1/customers", records_with_key=records_with_key,
                     probe=CrmObject.CUSTOMER, keyed=CrmObject.CUSTOMER, creatable=_CUSTOMER_ONLY, deletable=None,
                     refused_code="10010") as harness:
        yield harness


VERTICAL: dict[str, Callable[[], AbstractAsyncContextManager[Harness]]] = {
    "mindbody": mindbody,
    "tekmetric": tekmetric,
    "toast": toast,
}
harness.HARNESSES.update(VERTICAL)
