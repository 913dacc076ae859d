"""Toast sandbox: one restaurant's guests (the CRM API's customers) and orders, behind the partner login.

Wire facts from ../shared/reference (Toast section) and provider-specs/toast (authentication and orders Swagger):
`POST /authentication/v1/authentication/login` (`{clientId, clientSecret, userAccessType: TOAST_MACHINE_CLIENT}`
→ `{token: {tokenType, accessToken, expiresIn: 86400, ...}, status: SUCCESS}`, the same token again until its
last minute; the auth endpoint is rate-limited hard: at most `logins_per_hour` logins per rolling hour, then a
429), `Authorization: Bearer` plus `Toast-Restaurant-External-ID` on every restaurant call, `ErrorMessage`
error bodies, 20 requests/s per client (a 429 with `Retry-After`), `X-Toast-RateLimit-{By,Remaining,Reset}` on
every answer, and `ordersBulk` windows (`startDate` inclusive, `endDate` exclusive, `pageSize` ≤ 100 with
`page` and RFC 5988 `Link` headers). Guests come from `checks[].customer`; the deprecated CRM API (`/crm/v1`)
creates a guest under a client-chosen `guid` and searches guests by phone or email.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandboxes.common import Handler, SandboxState, control_routes, guarded
from sandboxes.grants import GrantIssuer, refusing_bad_input
from sandboxes.toast_wire import GUEST_FIELDS, ToastWire, error_message, guest_matches, order_json, toast_time

LOGIN_PATH = "/authentication/v1/authentication/login"


@dataclass
class ToastState(SandboxState):
    restaurant_guid: str = "e0b7bd9d-5e0f-4b28-9e8b-6a9c2b6d0a11"
    guests: dict[str, dict[str, Any]] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    logins_per_hour: int | None = 2  # Toast: "never more than twice an hour"
    login_times: list[float] = field(default_factory=list)

    def add_guest(self, fields: dict[str, Any], guid: str | None = None) -> dict[str, Any]:
        key = guid or str(uuid.uuid4())
        row: dict[str, Any] = {"guid": key, "entityType": "Customer", "firstName": None, "lastName": None,
                               "email": None, "phone": None, "phoneCountryCode": None} | fields
        row["guid"] = key
        self.guests[key] = row
        return row

    def add_order(self, guest_guid: str | None) -> dict[str, Any]:
        """An order as the POS would record it, with the guest on its check."""
        now = self.now()
        guid = str(uuid.uuid4())
        row: dict[str, Any] = {"guid": guid, "_modified": now, "_guest": guest_guid}
        self.orders[guid] = row
        return row

    def seed_guest(self, fields: dict[str, Any]) -> dict[str, Any]:
        """A guest who ordered: what Toast knows of a restaurant's guests."""
        guest = self.add_guest(fields)
        self.add_order(guest["guid"])
        return guest


def create_app(state: ToastState | None = None) -> Starlette:
    """The Toast sandbox; `app.state.sandbox` is the ToastState tests inspect and steer."""
    st = state or ToastState(tokens=GrantIssuer("toast", 86400, reuse_live_tokens=True))
    if st.knobs.interval_limit is None:
        st.knobs.interval_limit, st.knobs.interval_seconds = 20, 1.0  # 20 requests per second per client
    wire = ToastWire()
    issuer: GrantIssuer = st.tokens  # type: ignore[assignment]

    async def login(request: Request) -> Response:
        st.calls[f"POST {LOGIN_PATH}"] += 1
        if st.knobs.fail_next > 0:
            st.knobs.fail_next -= 1
            return wire.server_error(st.knobs.fail_status)
        now = issuer.clock()
        st.login_times = [t for t in st.login_times if now - t < 3600]
        if st.logins_per_hour is not None and len(st.login_times) >= st.logins_per_hour:
            wait = int(3600 - (now - st.login_times[0])) + 1
            response = error_message(429, 429, "Too many authentication requests")
            response.headers["Retry-After"] = str(wait)
            return response
        st.login_times.append(now)
        body = await request.json()
        if body.get("userAccessType") != "TOAST_MACHINE_CLIENT" or not issuer.accepts(
                body.get("clientId"), body.get("clientSecret")):
            return error_message(401, 10010, "Access denied")
        access, left = issuer.grant()
        return JSONResponse({"token": {"tokenType": "Bearer", "scope": None, "expiresIn": int(left or 0),
                                       "accessToken": access, "idToken": None, "refreshToken": None},
                             "status": "SUCCESS"})

    def restaurant(handler: Handler) -> Handler:
        checked = refusing_bad_input(handler, lambda: error_message(400, 10000, "The request is malformed"))

        async def endpoint(request: Request) -> Response:
            if request.headers.get("toast-restaurant-external-id") != st.restaurant_guid:
                return error_message(403, 10021, "Restaurant not accessible to this client")
            return await checked(request)

        return endpoint

    async def create_guest(request: Request) -> Response:
        body = await request.json()
        unknown = set(body) - GUEST_FIELDS
        if unknown or not body.get("firstName") and not body.get("email"):
            return error_message(400, 10032, "Invalid customer", field_name=sorted(unknown)[0] if unknown else None)
        guid = str(body.get("guid") or uuid.uuid4())
        if guid in st.guests:  # the guid is the caller's idempotency key: a second POST answers the first
            return JSONResponse(st.guests[guid])
        return JSONResponse(st.add_guest({k: v for k, v in body.items() if k != "guid"}, guid))

    async def read_guest(request: Request) -> Response:
        guest = st.guests.get(request.path_params["guid"])
        return JSONResponse(guest) if guest else error_message(404, 10404, "Customer not found")

    async def search_guests(request: Request) -> Response:
        query = (await request.json()).get("query") or {}
        if not query or set(query) - {"phone", "email", "firstName", "lastName"}:
            return error_message(400, 10033, "Invalid search query")
        hits = [g for g in st.guests.values() if all(guest_matches(g, k, str(v)) for k, v in query.items())]
        return JSONResponse(hits)

    async def orders_bulk(request: Request) -> Response:
        q = request.query_params
        try:
            start, end = toast_time(q["startDate"]), toast_time(q["endDate"])
        except (KeyError, ValueError):
            return error_message(400, 10100, "startDate and endDate are required ISO-8601 date-times")
        if end <= start:
            return error_message(400, 10101, "endDate must be later than startDate")
        page_size = st.page_size(int(q.get("pageSize", 100)), 100)
        page = int(q.get("page", 1))
        rows = sorted((o for o in st.orders.values() if start <= o["_modified"] < end),
                      key=lambda o: o["_modified"])
        chunk = rows[(page - 1) * page_size:page * page_size]
        response = JSONResponse([order_json(o, st.guests.get(o["_guest"] or "")) for o in chunk])
        links = [f'<{request.url.include_query_params(page=page)}>; rel="self"']
        if page * page_size < len(rows):
            links.append(f'<{request.url.include_query_params(page=page + 1)}>; rel="next"')
        response.headers["Link"] = ", ".join(links)
        return response

    async def read_order(request: Request) -> Response:
        order = st.orders.get(request.path_params["guid"])
        if order is None:
            return error_message(404, 10404, "Order not found")
        return JSONResponse(order_json(order, st.guests.get(order["_guest"] or "")))

    api = [
        ("POST", "/crm/v1/customers", create_guest),
        ("POST", "/crm/v1/customers/search", search_guests),
        ("GET", "/crm/v1/customers/{guid}", read_guest),
        ("GET", "/orders/v2/ordersBulk", orders_bulk),
        ("GET", "/orders/v2/orders/{guid}", read_order),
    ]
    routes = [Route(LOGIN_PATH, login, methods=["POST"]), *control_routes(st),
              *(guarded(st, wire, method, path, restaurant(handler)) for method, path, handler in api)]
    app = Starlette(routes=routes)
    app.state.sandbox = st
    return app

