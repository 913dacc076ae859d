"""Mindbody Public API v6 sandbox: one site's clients, appointments and contact logs, and staff user tokens.

Wire facts from ../shared/reference (Mindbody section) and provider-specs/mindbody (Swagger 2.0): every call
needs `Api-Key` and `SiteId` headers; staff-scoped calls an `Authorization` staff user token from
`POST /public/v6/usertoken/issue` (`{Username, Password}` → `{TokenType, AccessToken, Expires, User}`, 24 h);
errors are `{"Error": {"Message", "Code"}}`; lists page with `request.limit` / `request.offset` and answer a
`PaginationResponse`; `request.lastModifiedDate` is on-or-after. Every call, the token issue included,
counts against the site's daily cap (1,000 on the sandbox site, a hard cap), enforced here.
Unverified and chosen: unknown client properties are refused with 400 `InvalidParameter`; the over-cap
answer is a 429 in the v6 error envelope.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandboxes.common import Handler, SandboxState, control_routes, guarded, iso_ms
from sandboxes.grants import GrantIssuer, refusing_bad_input
from sandboxes.mindbody_wire import (
    APPOINTMENT_UPDATABLE,
    CLIENT_FIELDS,
    EXECUTE,
    PREFIX,
    MindbodyWire,
    client_json,
    client_matches,
    error,
    paged,
)

TOKEN_PATH = f"{PREFIX}/usertoken/issue"
DAILY_CAP = 1000


@dataclass
class MindbodyState(SandboxState):
    site_id: str = "-99"
    api_key: str = "mindbody-sandbox-api-key"
    username: str = "owner@sandbox.example"
    password: str = "sandbox-staff-password"
    clients: dict[str, dict[str, Any]] = field(default_factory=dict)
    appointments: dict[int, dict[str, Any]] = field(default_factory=dict)
    contact_logs: dict[int, dict[str, Any]] = field(default_factory=dict)
    next_id: int = 100015
    location_id: int = 1
    staff_id: int = 5
    session_type_id: int = 9

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def add_client(self, fields: dict[str, Any]) -> dict[str, Any]:
        unique = self._id()
        rssid = str(fields.get("NewId") or unique)
        now = iso_ms(self.now())
        row = {"Id": rssid, "UniqueId": unique, "Active": True, "Status": "Active", "IsProspect": False,
               "CreationDate": now, "LastModifiedDateTime": now, "MobilePhone": None, "HomePhone": None,
               "WorkPhone": None, "Email": None}
        row |= {k: v for k, v in fields.items() if k not in ("NewId", "Test", "ReactivateInactiveClient")}
        row["Id"] = rssid
        self.clients[rssid] = row
        return row

    def add_appointment(self, fields: dict[str, Any]) -> dict[str, Any]:
        appointment_id = self._id()
        row: dict[str, Any] = {
               "Id": appointment_id, "Status": "Booked", "StaffRequested": False, "FirstAppointment": False,
               "IsWaitlist": False, "Notes": None, "PartnerExternalId": None, "EndDateTime": None,
               "_modified": iso_ms(self.now())}
        row |= {k: v for k, v in fields.items() if k not in ("Test", "SendEmail", "ApplyPayment", "Execute")}
        row["Id"] = appointment_id
        self.appointments[appointment_id] = row
        return row

    def touch(self, row: dict[str, Any]) -> None:
        row["LastModifiedDateTime"] = iso_ms(self.now())


def create_app(state: MindbodyState | None = None) -> Starlette:
    """The Mindbody sandbox; `app.state.sandbox` is the MindbodyState tests inspect and steer."""
    st = state or MindbodyState(tokens=GrantIssuer("mindbody", 24 * 3600))
    st.tokens.client_id, st.tokens.client_secret = st.username, st.password
    if st.knobs.interval_limit is None:
        st.knobs.interval_limit, st.knobs.interval_seconds = DAILY_CAP, 86400.0
    wire = MindbodyWire()
    issuer: GrantIssuer = st.tokens  # type: ignore[assignment]

    def site_headers(request: Request) -> Response | None:
        if request.headers.get("api-key") != st.api_key:
            return error(401, "DeniedAccess", "Invalid API key.")
        if request.headers.get("siteid") != st.site_id:
            return error(400, "InvalidSiteId", "SiteId header is missing or invalid.")
        return None

    def site(handler: Handler) -> Handler:
        checked = refusing_bad_input(handler, lambda: error(400, "InvalidParameter", "The request is malformed."))

        async def endpoint(request: Request) -> Response:
            return site_headers(request) or await checked(request)

        return endpoint

    async def issue(request: Request) -> Response:
        st.calls[f"POST {TOKEN_PATH}"] += 1
        if st.knobs.fail_next > 0:
            st.knobs.fail_next -= 1
            return wire.server_error(st.knobs.fail_status)
        remaining = st.take_interval_budget()  # token calls count against the daily cap too
        if remaining is not None and remaining < 0:
            return wire.rate_limited(st)
        problem = site_headers(request)
        if problem:
            return problem
        body = await request.json()
        if not issuer.accepts(body.get("Username"), body.get("Password")):
            return error(401, "DeniedAccess", "Staff identity authentication failed.")
        access, ttl = issuer.grant()
        expires = datetime.now(UTC) + timedelta(seconds=ttl or 0)
        return JSONResponse({"TokenType": "Bearer", "AccessToken": access,
                             "Expires": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                             "User": {"Id": 0, "FirstName": "Sandbox", "LastName": "Owner", "Type": "Owner"}})

    async def locations(request: Request) -> Response:
        return paged("Locations", [{"Id": st.location_id, "Name": "Sandbox Studio", "BusinessId": 1}], request, 200)

    async def clients(request: Request) -> Response:
        q = request.query_params
        rows = [r for r in st.clients.values() if r["Active"] or q.get("request.includeInactive") == "true"]
        ids = q.getlist("request.clientIDs")
        if ids:
            rows = [r for r in rows if r["Id"] in ids]
        if q.get("request.searchText"):
            rows = [r for r in rows if client_matches(r, q["request.searchText"])]
        if q.get("request.lastModifiedDate"):
            since = q["request.lastModifiedDate"]
            rows = [r for r in rows if _time(r["LastModifiedDateTime"]) >= _time(since)]
            rows.sort(key=lambda r: (r["LastModifiedDateTime"], r["UniqueId"]))
        return paged("Clients", [client_json(r) for r in rows], request, st.page_size(200, 200))

    async def duplicates(request: Request) -> Response:
        q = request.query_params
        wanted = [q.get(f"request.{k}", "").lower() for k in ("firstName", "lastName", "email")]
        rows = [r for r in st.clients.values()
                if [str(r.get(k) or "").lower() for k in ("FirstName", "LastName", "Email")] == wanted]
        return paged("ClientDuplicates", [client_json(r) for r in rows], request, 200)

    def unknown(fields: dict[str, Any]) -> Response | None:
        extra = set(fields) - CLIENT_FIELDS
        return error(400, "InvalidParameter", "The request contains unknown client properties.") if extra else None

    async def add_client(request: Request) -> Response:
        body = await request.json()
        problem = unknown(body)
        if problem:
            return problem
        if not body.get("FirstName") or not body.get("LastName"):
            return error(400, "MissingRequiredFields", "FirstName and LastName are required.")
        identity = [str(body.get(k) or "").lower() for k in ("FirstName", "LastName", "Email")]
        if any([str(r.get(k) or "").lower() for k in ("FirstName", "LastName", "Email")] == identity
               for r in st.clients.values()):  # duplicates are refused since May 2020
            return error(400, "InvalidClientCreation", "A client with this name and email already exists.")
        if body.get("NewId") and body["NewId"] in st.clients:
            return error(400, "InvalidClientCreation", "The client ID is already in use.")
        return JSONResponse({"Client": client_json(st.add_client(body))})

    async def update_client(request: Request) -> Response:
        body = await request.json()
        fields = dict(body.get("Client") or {})
        row = st.clients.get(str(fields.get("Id")))
        if row is None:
            return error(404, "ClientNotFound", "The client was not found.")
        problem = unknown(fields)
        if problem:
            return problem
        row |= {k: v for k, v in fields.items() if k != "Id"}
        st.touch(row)
        return JSONResponse({"Client": client_json(row)})

    def appointment_json(row: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in row.items() if not k.startswith("_")}

    async def staff_appointments(request: Request) -> Response:
        q = request.query_params
        rows = list(st.appointments.values())
        ids = q.getlist("request.appointmentIds")
        if ids:
            rows = [r for r in rows if str(r["Id"]) in ids]
        else:  # without ids: one day (today) unless a window is given
            start = q.get("request.startDate") or datetime.now(UTC).date().isoformat()
            end = q.get("request.endDate") or start
            rows = [r for r in rows if start[:10] <= r["StartDateTime"][:10] <= end[:10]]
        if q.get("request.clientId"):
            rows = [r for r in rows if r["ClientId"] == q["request.clientId"]]
        return paged("Appointments", [appointment_json(r) for r in rows], request, st.page_size(200, 200))

    async def add_appointment(request: Request) -> Response:
        body = await request.json()
        required = ("ClientId", "LocationId", "SessionTypeId", "StaffId", "StartDateTime")
        missing = [k for k in required if not body.get(k)]
        if missing:
            return error(400, "MissingRequiredFields", "Required appointment fields are missing.")
        if body["ClientId"] not in st.clients:
            return error(400, "InvalidClientId", "The client was not found.")
        if (body["LocationId"], body["StaffId"], body["SessionTypeId"]) != (st.location_id, st.staff_id,
                                                                              st.session_type_id):
            return error(400, "InvalidSessionTypeId", "The staff member cannot book this session type here.")
        # Request deduplication: an identical booking of the same partner key answers the first one.
        for row in st.appointments.values():
            if body.get("PartnerExternalId") and row.get("PartnerExternalId") == body["PartnerExternalId"]:
                return JSONResponse({"Appointment": appointment_json(row)})
        return JSONResponse({"Appointment": appointment_json(st.add_appointment(body))})

    async def update_appointment(request: Request) -> Response:
        body = await request.json()
        row = st.appointments.get(int(body.get("AppointmentId") or 0))
        if row is None:
            return error(404, "InvalidAppointmentId", "The appointment was not found.")
        if set(body) - APPOINTMENT_UPDATABLE or (body.get("Execute") and body["Execute"] not in EXECUTE):
            return error(400, "InvalidParameter", "Only time, staff, notes, session type and Execute can change.")
        row |= {k: v for k, v in body.items() if k not in ("AppointmentId", "Execute", "Test", "SendEmail")}
        if body.get("Execute"):
            row["Status"] = EXECUTE[body["Execute"]]
        row["_modified"] = iso_ms(st.now())
        return JSONResponse({"Appointment": appointment_json(row)})

    def log_json(row: dict[str, Any]) -> dict[str, Any]:
        client = st.clients.get(row["_client"])
        return {k: v for k, v in row.items() if not k.startswith("_")} | {"Client": client_json(client or {})}

    async def contact_logs(request: Request) -> Response:
        client_id = request.query_params.get("request.clientId")
        if client_id not in st.clients:
            return error(400, "InvalidClientId", "The client was not found.")
        rows = [log_json(r) for r in st.contact_logs.values() if r["_client"] == client_id]
        return paged("ContactLogs", rows, request, 200)

    async def add_contact_log(request: Request) -> Response:
        body = await request.json()
        if body.get("ClientId") not in st.clients or not body.get("ContactMethod"):
            return error(400, "InvalidClientId", "ClientId and ContactMethod are required.")
        row = {"Id": st._id(), "Text": body.get("Text"), "CreatedDateTime": iso_ms(st.now()),
               "FollowupByDate": body.get("FollowupByDate"), "ContactMethod": body["ContactMethod"],
               "ContactName": body.get("ContactName"), "Comments": [], "Types": [], "_client": body["ClientId"]}
        st.contact_logs[row["Id"]] = row
        return JSONResponse(log_json(row))

    async def update_contact_log(request: Request) -> Response:
        body = await request.json()
        row = st.contact_logs.get(int(body.get("Id") or 0))
        if row is None:
            return error(404, "InvalidContactLogId", "The contact log was not found.")
        row |= {k: body[k] for k in ("Text", "ContactName", "FollowupByDate", "ContactMethod") if k in body}
        return JSONResponse(log_json(row))

    api = [
        ("GET", "/site/locations", locations),
        ("GET", "/client/clients", clients),
        ("GET", "/client/clientduplicates", duplicates),
        ("POST", "/client/addclient", add_client),
        ("POST", "/client/updateclient", update_client),
        ("GET", "/client/contactlogs", contact_logs),
        ("POST", "/client/addcontactlog", add_contact_log),
        ("POST", "/client/updatecontactlog", update_contact_log),
        ("GET", "/appointment/staffappointments", staff_appointments),
        ("POST", "/appointment/addappointment", add_appointment),
        ("POST", "/appointment/updateappointment", update_appointment),
    ]
    routes = [Route(TOKEN_PATH, issue, methods=["POST"]), *control_routes(st),
              *(guarded(st, wire, method, PREFIX + path, site(handler)) for method, path, handler in api)]
    app = Starlette(routes=routes)
    app.state.sandbox = st
    return app


def _time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
