"""Tekmetric API v1 sandbox: shops, customers, appointments and repair orders of one shop.

Wire facts from ../shared/reference (Tekmetric section) and provider-specs/tekmetric/Tekmetric-API.txt:
client-credentials token at `POST /api/v1/oauth/token` (HTTP Basic client id:secret, form
`grant_type=client_credentials`, answer `{access_token, token_type: "bearer", scope: "<shop ids>"}`, the same
token again while it lives), a bad or expired bearer is HTTP 401 with an **empty body**, 403
`insufficient_scope` for a shop outside the token's scope, API errors as `{"type":"ERROR","message",...}`,
Spring Data pages (0-based `page`, `size` capped at 100, `last`), `updatedDateStart` / `deletedDateStart`
filters (the deleted filter returns deleted rows only), and 429 with an empty body (300/min on the sandbox
host, 600/min in production).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandboxes.common import SandboxState, control_routes, guarded
from sandboxes.grants import GrantIssuer, refusing_bad_input
from sandboxes.tekmetric_wire import (
    APPOINTMENT_FIELDS,
    CUSTOMER_FIELDS,
    RO_PATCH_FIELDS,
    TekmetricWire,
    api_error,
    customer_json,
    matches,
    page,
    parse_time,
    stamp,
)

TOKEN_PATH = "/api/v1/oauth/token"


@dataclass
class TekmetricState(SandboxState):
    shop_id: int = 1
    customers: dict[int, dict[str, Any]] = field(default_factory=dict)
    appointments: dict[int, dict[str, Any]] = field(default_factory=dict)
    repair_orders: dict[int, dict[str, Any]] = field(default_factory=dict)
    next_id: int = 35680

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def add_customer(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Create a customer as `POST /customers` would (tests seed with it too)."""
        now = stamp(self.now())
        phones = [{"id": self._id(), "number": p["number"], "type": p.get("type", "Mobile"),
                   "primary": bool(p.get("primary", i == 0))} for i, p in enumerate(fields.get("phones") or [])]
        emails = fields.get("email") or []
        row = {"id": self._id(), "firstName": fields.get("firstName"), "lastName": fields.get("lastName"),
               "email": emails[0] if isinstance(emails, list) and emails else emails or None, "phone": phones,
               "customerType": {"id": 1, "code": "PERSON", "name": "Person"}, "address": fields.get("address"),
               "notes": fields.get("notes"), "okForMarketing": bool(fields.get("okForMarketing", False)),
               "shopId": self.shop_id, "createdDate": now, "updatedDate": now, "deletedDate": None}
        self.customers[row["id"]] = row
        return row

    def add_appointment(self, fields: dict[str, Any]) -> dict[str, Any]:
        now = stamp(self.now())
        row = {"id": self._id(), "shopId": self.shop_id, "customerId": fields.get("customerId"),
               "vehicleId": fields.get("vehicleId"), "startTime": fields["startTime"], "endTime": fields["endTime"],
               "title": fields["title"], "description": fields.get("description"), "color": fields.get("color"),
               "appointmentStatus": "NONE", "createdDate": now, "updatedDate": now, "deletedDate": None}
        self.appointments[row["id"]] = row
        return row

    def add_repair_order(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Repair orders are written in the shop's Tekmetric UI; the API reads and patches them."""
        now = stamp(self.now())
        number = len(self.repair_orders) + 1001
        row = {"id": self._id(), "repairOrderNumber": number, "shopId": self.shop_id,
               "repairOrderStatus": {"id": 1, "code": "ESTIMATE", "name": "Estimate"},
               "customerId": fields.get("customerId"), "vehicleId": fields.get("vehicleId"),
               "keyTag": fields.get("keyTag"), "milesIn": fields.get("milesIn"), "milesOut": None,
               "technicianId": None, "serviceWriterId": None, "customerTimeOut": None,
               "customerConcerns": fields.get("customerConcerns") or [], "totalSales": fields.get("totalSales", 0),
               "createdDate": now, "updatedDate": now, "deletedDate": None}
        self.repair_orders[row["id"]] = row
        return row

    def touch(self, row: dict[str, Any]) -> None:
        row["updatedDate"] = stamp(self.now())


def create_app(state: TekmetricState | None = None) -> Starlette:
    """The Tekmetric sandbox; `app.state.sandbox` is the TekmetricState tests inspect and steer."""
    st = state or TekmetricState(tokens=GrantIssuer("tekmetric", None, reuse_live_tokens=True))
    if st.knobs.interval_limit is None:
        st.knobs.interval_limit, st.knobs.interval_seconds = 300, 60.0  # the sandbox host's documented limit
    wire = TekmetricWire()
    issuer: GrantIssuer = st.tokens  # type: ignore[assignment]

    async def token(request: Request) -> Response:
        st.calls[f"POST {TOKEN_PATH}"] += 1
        if st.knobs.fail_next > 0:
            st.knobs.fail_next -= 1
            return wire.server_error(st.knobs.fail_status)
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            client_id, _, client_secret = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            client_id = client_secret = ""
        if scheme.lower() != "basic" or not issuer.accepts(client_id, client_secret):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if "grant_type=client_credentials" not in (await request.body()).decode():
            return JSONResponse({"error": "unsupported_grant_type",
                                 "error_description": "OAuth 2.0 Parameter: grant_type"}, status_code=400)
        access, _ = issuer.grant()
        return JSONResponse({"access_token": access, "token_type": "bearer", "scope": str(st.shop_id)})

    def in_scope(request: Request) -> Response | None:
        shop = request.query_params.get("shop")
        if shop is None:
            return api_error(400, "shop is required")
        if shop != str(st.shop_id):
            return JSONResponse({"error": "insufficient_scope", "error_description":
                                 "Insufficient scope for this resource", "scope": str(st.shop_id)}, status_code=403)
        return None

    def listed(request: Request, rows: dict[int, dict[str, Any]], search_keys: tuple[str, ...]) -> Response:
        problem = in_scope(request)
        if problem:
            return problem
        q = request.query_params
        hits = list(rows.values())
        deleted_since = parse_time(q.get("deletedDateStart"))
        if deleted_since is not None:  # observed: the deleted filter returns deleted rows only
            hits = [r for r in hits if r["deletedDate"] and parse_time(r["deletedDate"]) >= deleted_since]  # type: ignore[operator]
        elif q.get("includeDeleted", "true" if rows is st.appointments else "false") != "true":
            hits = [r for r in hits if not r["deletedDate"]]
        updated_since = parse_time(q.get("updatedDateStart"))
        if updated_since is not None:
            hits = [r for r in hits if parse_time(r["updatedDate"]) >= updated_since]  # type: ignore[operator]
        for name in ("customerId", "vehicleId"):
            if q.get(name):
                hits = [r for r in hits if str(r.get(name)) == q[name]]
        if q.get("search"):
            hits = [r for r in hits if matches(r, q["search"], search_keys)]
        size = st.page_size(int(q.get("size", 10)), 100)
        public = customer_json if rows is st.customers else dict
        return page([public(r) for r in hits], int(q.get("page", 0)), size)

    def one(rows: dict[int, dict[str, Any]], request: Request) -> dict[str, Any] | None:
        try:
            return rows.get(int(request.path_params["id"]))
        except ValueError:
            return None

    async def shops(request: Request) -> Response:
        return JSONResponse([{"id": st.shop_id, "name": "Sandbox Auto", "environment": "sandbox"}])

    async def customers(request: Request) -> Response:
        return listed(request, st.customers, ("firstName", "lastName", "email", "phone"))

    async def customer(request: Request) -> Response:
        row = one(st.customers, request)
        return JSONResponse(customer_json(row)) if row else api_error(404, "Customer not found")

    async def create_customer(request: Request) -> Response:
        body = await request.json()
        unknown = set(body) - CUSTOMER_FIELDS
        if unknown or body.get("shopId") != st.shop_id or not body.get("firstName"):
            return api_error(400, "Invalid request", details={k: "unknown field" for k in sorted(unknown)})
        if not isinstance(body.get("email", []), list):
            return api_error(400, "Invalid request", details={"email": "must be an array"})
        row = st.add_customer(body)
        return JSONResponse({"type": "SUCCESS", "message": "Customer created", "data": customer_json(row),
                             "details": {}})

    async def patch_customer(request: Request) -> Response:
        row = one(st.customers, request)
        if row is None:
            return api_error(404, "Customer not found")
        body = await request.json()
        unknown = set(body) - CUSTOMER_FIELDS
        if unknown:
            return api_error(400, "Invalid request", details={k: "unknown field" for k in sorted(unknown)})
        for name, value in body.items():
            if name == "email":
                row["email"] = value[0] if isinstance(value, list) and value else value
            elif name == "phones":
                row["phone"] = [{"id": p.get("id") or st._id(), "number": p["number"],
                                 "type": p.get("type", "Mobile"), "primary": bool(p.get("primary"))} for p in value]
            elif name != "shopId":
                row[name] = value
        st.touch(row)
        return JSONResponse({"type": "SUCCESS", "message": "Customer updated", "data": customer_json(row),
                             "details": {}})

    async def appointments(request: Request) -> Response:
        return listed(request, st.appointments, ())

    async def appointment(request: Request) -> Response:
        row = one(st.appointments, request)
        return JSONResponse(row) if row else api_error(404, "Appointment not found")

    async def create_appointment(request: Request) -> Response:
        body = await request.json()
        unknown = set(body) - APPOINTMENT_FIELDS
        missing = [k for k in ("shopId", "startTime", "endTime", "title") if not body.get(k)]
        if unknown or missing or body["shopId"] != st.shop_id:
            details = {k: "unknown field" for k in sorted(unknown)} | {k: "required" for k in missing}
            return api_error(400, "Invalid request", details=details)
        row = st.add_appointment(body)
        return JSONResponse({"type": "SUCCESS", "message": "Appointment Saved", "data": row["id"], "details": {}})

    async def patch_appointment(request: Request) -> Response:
        row = one(st.appointments, request)
        if row is None or row["deletedDate"]:
            return api_error(404, "Appointment not found")
        body = await request.json()
        unknown = set(body) - APPOINTMENT_FIELDS
        if unknown:
            return api_error(400, "Invalid request", details={k: "unknown field" for k in sorted(unknown)})
        row.update({k: v for k, v in body.items() if k != "shopId"})
        st.touch(row)
        return JSONResponse({"type": "SUCCESS", "message": "Appointment Saved", "data": row["id"], "details": {}})

    async def delete_appointment(request: Request) -> Response:
        row = one(st.appointments, request)
        if row is None or row["deletedDate"]:
            return api_error(404, "Appointment not found")
        row["deletedDate"] = stamp(st.now())
        st.touch(row)
        return JSONResponse({"type": "SUCCESS", "message": "Appointment Deleted", "data": 1, "details": {}})

    async def repair_orders(request: Request) -> Response:
        return listed(request, st.repair_orders, ("keyTag", "repairOrderNumber"))

    async def repair_order(request: Request) -> Response:
        row = one(st.repair_orders, request)
        return JSONResponse(row) if row else api_error(404, "Repair order not found")

    async def patch_repair_order(request: Request) -> Response:
        row = one(st.repair_orders, request)
        if row is None:
            return api_error(404, "Repair order not found")
        body = await request.json()
        unknown = set(body) - RO_PATCH_FIELDS
        if unknown:
            return api_error(400, "Invalid request", details={k: "not updatable" for k in sorted(unknown)})
        row.update(body)
        st.touch(row)
        return JSONResponse({"type": "SUCCESS", "message": "Repair Order Saved", "data": {}, "details": {}})

    api = [
        ("GET", "/api/v1/shops", shops),
        ("GET", "/api/v1/customers", customers),
        ("POST", "/api/v1/customers", create_customer),
        ("GET", "/api/v1/customers/{id}", customer),
        ("PATCH", "/api/v1/customers/{id}", patch_customer),
        ("GET", "/api/v1/appointments", appointments),
        ("POST", "/api/v1/appointments", create_appointment),
        ("GET", "/api/v1/appointments/{id}", appointment),
        ("PATCH", "/api/v1/appointments/{id}", patch_appointment),
        ("DELETE", "/api/v1/appointments/{id}", delete_appointment),
        ("GET", "/api/v1/repair-orders", repair_orders),
        ("GET", "/api/v1/repair-orders/{id}", repair_order),
        ("PATCH", "/api/v1/repair-orders/{id}", patch_repair_order),
    ]
    routes = [Route(TOKEN_PATH, token, methods=["POST"]), *control_routes(st),
              *(guarded(st, wire, method, path, refusing_bad_input(handler, lambda: api_error(400, "Bad Request")))
                for method, path, handler in api)]
    app = Starlette(routes=routes)
    app.state.sandbox = st
    return app
