"""The Mindbody and Toast sandboxes answer what the providers' own Swagger 2.0 documents define.

Every exchange the real drivers cause (through the contract harness, so the same calls production makes) is
recorded, matched to its operation in the provider's Swagger file, and its JSON body validated with
`jsonschema` against the operation's response schema (Swagger 2.0 schemas are JSON Schema draft 4 plus
`definitions`). Error bodies are checked against the providers' error definitions. Swagger 2.0 has no
`nullable`, yet both providers send nulls for absent values (see the reference's recorded answers), so a
typed property also accepts null; nothing else is relaxed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from drivers.base import CrmObject
from tests.support.specs import provider_spec
from tests.unit.drivers.harness import Harness
from tests.unit.drivers.harness_vertical import mindbody, tekmetric, toast


class Recorder(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner, self.exchanges = inner, list[tuple[str, str, int, Any]]()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        self.exchanges.append((request.method, request.url.path, response.status_code,
                               json.loads(body) if body else None))
        return httpx.Response(response.status_code, headers=response.headers, content=body)


def _nullable(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: _nullable(v) for k, v in schema.items()}
        if isinstance(out.get("type"), str) and out["type"] != "null":
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        return out
    if isinstance(schema, list):
        return [_nullable(v) for v in schema]
    return schema


class Spec:
    """One Swagger 2.0 document: response schemas by (method, concrete path, status)."""

    def __init__(self, document: dict[str, Any], prefix: str) -> None:
        self.document, self.prefix = _nullable(document), prefix
        self.operations = [(re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", prefix + path) + "$"), method, op)
                           for path, ops in document["paths"].items() for method, op in ops.items()
                           if isinstance(op, dict)]

    def validate(self, schema: dict[str, Any], body: Any) -> None:
        root = {"definitions": self.document["definitions"], **schema}
        jsonschema.Draft4Validator(root).validate(body)

    def response_schema(self, method: str, path: str, status: int) -> dict[str, Any] | None:
        for pattern, op_method, op in self.operations:
            if op_method == method.lower() and pattern.match(path):
                response = op["responses"].get(str(status)) or {}
                return response.get("schema")
        raise AssertionError(f"{method} {path} is not an operation of the provider's spec")


def _matched(recorder: Recorder, spec: Spec, skip: re.Pattern[str]) -> Iterator[tuple[str, int, Any, Any]]:
    for method, path, status, body in recorder.exchanges:
        if skip.match(path):
            continue
        yield f"{method} {path}", status, body, spec.response_schema(method, path, status)


async def test_mindbody_answers_match_the_public_api_v6_swagger() -> None:
    document = json.loads(provider_spec("mindbody", "mindbody-public-api-v6.swagger.json").read_text())
    spec = Spec(document, "")
    api_error = {"$ref": "#/definitions/Mindbody.PublicApi.Dto.Models.V6.ApiError"}
    async with mindbody() as h:
        recorder = _record(h)
        state = h.state
        customer = await h.driver.create_record(CrmObject.CUSTOMER, {"FirstName": "Ann", "LastName": "Lee",
                                                                     "Email": "ann@example.com"}, "spec-1")
        await h.driver.update_record(CrmObject.CUSTOMER, customer.external_id, {"MobilePhone": "4155550100"})
        await h.driver.lookup_customer(phone="+1 415 555 0100")
        await h.driver.list_recent(CrmObject.CUSTOMER, datetime.now(UTC) - timedelta(hours=1))
        start = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%S")
        booking = await h.driver.create_record(CrmObject.APPOINTMENT, {
            "ClientId": customer.external_id, "LocationId": state.location_id, "StaffId": state.staff_id,  # type: ignore[attr-defined]
            "SessionTypeId": state.session_type_id, "StartDateTime": start}, "spec-appt")  # type: ignore[attr-defined]
        await h.driver.update_record(CrmObject.APPOINTMENT, booking.external_id, {"Execute": "cancel"})
        await h.driver.get_record(CrmObject.APPOINTMENT, booking.external_id)
        note = await h.driver.append_note(customer.external_id, None, "Agent: hello", batch_key="b1")
        await h.driver.append_note(customer.external_id, note.external_id, "Caller: hi", batch_key="b2")
        await h.driver.test_connection()
        state.tokens.expire_all()  # a 401, then a fresh user token
        await h.driver.get_record(CrmObject.CUSTOMER, customer.external_id)
        with pytest.raises(Exception):  # noqa: B017 - any taxonomy error: the body is what is checked
            await h.driver.update_record(CrmObject.CUSTOMER, customer.external_id, {"Nope": 1})
    checked = 0
    for name, status, body, schema in _matched(recorder, spec, re.compile(r"^/__sandbox__")):
        if status >= 400:
            assert set(body) == {"Error"}, name
            spec.validate(api_error, body["Error"])
        else:
            assert schema is not None, f"{name} {status} has no schema in the spec"
            spec.validate(schema, body)
        checked += 1
    assert checked >= 15 and {s for _, _, s, _ in recorder.exchanges} >= {200, 400, 401}


async def test_toast_answers_match_the_authentication_and_orders_swagger() -> None:
    auth = yaml.safe_load(provider_spec("toast", "toast-authentication-api.swagger.yaml").read_text())
    orders = yaml.safe_load(provider_spec("toast", "toast-orders-api.swagger.yaml").read_text())
    auth_spec, orders_spec = Spec(auth, "/authentication/v1"), Spec(orders, "/orders/v2")
    error_message = {"$ref": "#/definitions/ErrorMessage"}
    async with toast() as h:
        recorder = _record(h)
        state = h.state
        for n in range(3):
            state.seed_guest({"firstName": f"Ann{n}", "lastName": "Lee", "email": f"ann{n}@example.com",  # type: ignore[attr-defined]
                              "phone": "4155550100"})
        state.add_order(None)  # type: ignore[attr-defined]  # an order without a guest on its check
        state.knobs.page_size_cap = 2
        assert len(await h.driver.list_recent(CrmObject.CUSTOMER, datetime.now(UTC) - timedelta(hours=1))) == 3
        order = next(iter(state.orders))  # type: ignore[attr-defined]
        await h.driver.client.get(f"/orders/v2/orders/{order}")
        await h.driver.client.get("/orders/v2/orders/00000000-0000-0000-0000-000000000000")
        state.tokens.expire_all()  # a 401, then a login
        await h.driver.test_connection()
        state.tokens.revoke_refresh()
        state.tokens.expire_all()
        await h.driver.test_connection()  # a refused login: 401 ErrorMessage
    checked = 0
    for method, path, status, body in recorder.exchanges:
        if path.startswith("/authentication/"):
            schema = auth_spec.response_schema(method, path, status)
        elif path.startswith("/orders/"):
            schema = orders_spec.response_schema(method, path, status)
        else:
            continue
        if status >= 400:
            auth_spec.validate(error_message, body)
        else:
            assert schema is not None, f"{method} {path} {status} has no schema in the spec"
            (auth_spec if path.startswith("/authentication/") else orders_spec).validate(schema, body)
        checked += 1
    statuses = {(p.split("/")[1], s) for _, p, s, _ in recorder.exchanges}
    assert checked >= 7 and {("orders", 200), ("orders", 401), ("orders", 404), ("authentication", 200),
                             ("authentication", 401)} <= statuses


def test_a_drifted_answer_fails_the_check() -> None:
    document = json.loads(provider_spec("mindbody", "mindbody-public-api-v6.swagger.json").read_text())
    spec = Spec(document, "")
    schema = spec.response_schema("GET", "/public/v6/client/clients", 200)
    assert schema is not None
    with pytest.raises(jsonschema.ValidationError):
        spec.validate(schema, {"PaginationResponse": {"TotalResults": "many"}, "Clients": []})
    with pytest.raises(jsonschema.ValidationError):
        spec.validate(schema, {"Clients": [{"UniqueId": "not-a-number"}]})


def _record(h: Harness) -> Recorder:
    recorder = Recorder(h.transport.inner)
    h.transport.inner = recorder
    return recorder


@pytest.mark.parametrize(("harness", "method", "path", "body"), [
    (mindbody, "POST", "/appointment/updateappointment", b'{"AppointmentId": "x"}'),
    (mindbody, "GET", "/client/clients?request.limit=many", b""),
    (toast, "GET", "/orders/v2/ordersBulk?startDate=2026-01-01T00:00:00.000%2B0000"
                   "&endDate=2026-01-02T00:00:00.000%2B0000&pageSize=ten", b""),
    (toast, "POST", "/crm/v1/customers", b"{not json"),
])
async def test_malformed_requests_get_the_providers_400_not_a_crash(harness: Any, method: str, path: str,
                                                                     body: bytes) -> None:
    async with harness() as h:
        response = await h.driver.client.request(method, path, content=body)
    assert response.status_code == 400 and response.json()


async def test_tekmetric_refuses_a_malformed_page_with_its_400() -> None:
    async with tekmetric() as h:
        response = await h.driver.client.get("/api/v1/customers", params={"shop": 1, "size": "ten"})
    assert response.status_code == 400 and response.json()["type"] == "ERROR"
