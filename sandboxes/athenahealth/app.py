"""athenaOne sandbox app: `/v1/{practiceid}/…` patients (search, enhancedbestmatch, custom fields, changed
feed), appointments (open slots, book, reschedule, changed feed), ping, and the client-credentials token
endpoint limited per minute (5 in preview, 50 in production). Writes are form-encoded; answers JSON.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandboxes.athenahealth.state import AthenaState, ClientCredentialsIssuer, digits
from sandboxes.common import Handler, control_routes, guarded

V1 = "/v1/{practiceid}"
_PHONES = ("homephone", "mobilephone", "workphone")
_SEARCHABLE = ("firstname", "lastname", "email", *_PHONES)


def error(status: int, message: str, detail: str | None = None) -> JSONResponse:
    return JSONResponse({"error": message} | ({"detailedmessage": detail} if detail else {}), status_code=status)


def public(row: dict[str, Any], custom: bool = False) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("_") and (custom or k != "customfields")}


class AthenaWire:
    def unauthorized(self, reason: str) -> Response:
        return error(401, "Unauthorized", "The access token is missing, invalid or expired.")

    def rate_limited(self, state: AthenaState) -> Response:
        response = error(429, "Too many requests", "Over the API rate limit.")
        if state.knobs.retry_after is not None:
            response.headers["Retry-After"] = state.knobs.retry_after
        return response

    def server_error(self, status: int) -> Response:
        return Response("Service Unavailable", status_code=status, media_type="text/plain")  # gateway: no JSON

    def decorate(self, response: Response, state: AthenaState) -> None:
        return None

    def token_response(self, state: AthenaState, access: str, refresh: str | None) -> Response:
        # expires_in as a string, as go-athenahealth's recorded token answer has it.
        return JSONResponse({"access_token": access, "token_type": "Bearer",
                             "expires_in": str(state.tokens.ttl_seconds), "scope": "athena/service/Athenanet.MDP.*"})

    def token_error(self, code: str) -> Response:
        return JSONResponse({"error": code, "error_description": "The client credentials are invalid."},
                            status_code=401)


async def form(request: Request) -> dict[str, str]:
    return dict(parse_qsl((await request.body()).decode()))


def listing(request: Request, key: str, rows: list[dict[str, Any]], maximum: int, custom: bool = False
            ) -> JSONResponse:
    st: AthenaState = request.app.state.sandbox
    q = request.query_params
    offset, size = int(q.get("offset", 0)), st.page_size(int(q.get("limit", 10 if key == "patients" else 1500)),
                                                         maximum)
    body: dict[str, Any] = {key: [public(r, custom) for r in rows[offset:offset + size]], "totalcount": len(rows)}
    if offset + size < len(rows):
        query = {k: v for k, v in q.items() if k not in ("offset", "limit")} | {"offset": offset + size, "limit": size}
        body["next"] = f"{request.url.path}?{urlencode(query)}"
    return JSONResponse(body)


def create_app(state: AthenaState | None = None) -> Starlette:
    """The athenahealth sandbox; `app.state.sandbox` is the AthenaState tests inspect and steer."""
    st = state or AthenaState(tokens=ClientCredentialsIssuer(3600))
    wire = AthenaWire()

    def practice(handler: Callable[[Request], Awaitable[Response]]) -> Handler:
        async def endpoint(request: Request) -> Response:
            if request.path_params["practiceid"] != st.practice_id:
                return error(404, "Invalid practice.", "The practice ID does not exist.")
            return await handler(request)

        return endpoint

    def patient_or_404(request: Request) -> dict[str, Any] | Response:
        row = st.patients.get(request.path_params["patientid"])
        return row if row is not None else error(404, "The patient is not found.")

    @practice
    async def ping(request: Request) -> Response:
        return JSONResponse({"pong": "true"})

    @practice
    async def find_patients(request: Request) -> Response:
        q = request.query_params
        rows = list(st.patients.values())
        if q.get("anyphone"):
            # athena documents no matching rule for non-US numbers: the sandbox matches stored digits ending in
            # the asked ones (a trunk 0 or a country code before them), and the driver checks the country.
            wanted = digits(q["anyphone"])[-10:]
            rows = [r for r in rows if any(wanted and digits(r.get(p)).endswith(wanted) for p in _PHONES)]
        for name in ("email", "firstname", "lastname", "dob"):
            if q.get(name):
                rows = [r for r in rows if str(r.get(name) or "").lower() == q[name].lower()]
        if not any(q.get(n) for n in ("anyphone", "email", "firstname", "lastname", "dob")):
            return error(400, "Additional fields are required.", "Provide a name, dob, phone or email to search.")
        return listing(request, "patients", rows, 1000)

    @practice
    async def quick_search(request: Request) -> Response:
        term = request.query_params.get("searchterm", "").lower()
        if len(term) < 2:
            return error(400, "The search term must be at least two characters.")
        rows = [r for r in st.patients.values() if any(term in str(r.get(f) or "").lower() for f in _SEARCHABLE)]
        return listing(request, "patients", rows, 1000)

    @practice
    async def bestmatch(request: Request) -> Response:
        q = request.query_params
        if not all(q.get(k) for k in ("firstname", "lastname", "dob")):
            return error(400, "Additional fields are required.", "firstname, lastname and dob are required.")
        scored = []
        for row in st.patients.values():
            score = sum(10 for k in ("firstname", "lastname") if str(row.get(k, "")).lower() == q[k].lower())
            score += 6 if row.get("dob") == q["dob"] else 0
            score += sum(4 for k in ("email", "mobilephone", "homephone") if q.get(k) and digits(q[k]) and (
                digits(row.get(k)) == digits(q[k]) or str(row.get(k, "")).lower() == q[k].lower()))
            if score >= 16:
                scored.append(public(row) | {"score": str(score)})
        return JSONResponse(sorted(scored, key=lambda r: -int(r["score"]))[:5])

    @practice
    async def create_patient(request: Request) -> Response:
        values = await form(request)
        missing = [k for k in ("firstname", "lastname", "dob", "departmentid") if not values.get(k)]
        if missing or not any(values.get(k) for k in ("email", "zip", *_PHONES)):
            return error(400, "Additional fields are required.", f"Missing: {', '.join(missing) or 'a contact'}")
        for row in st.patients.values():  # the built-in bestmatch: an existing patient, not a duplicate
            if all(str(row.get(k, "")).lower() == values[k].lower() for k in ("firstname", "lastname", "dob")):
                return JSONResponse([{"patientid": row["patientid"], "errormessage": ""}])
        return JSONResponse([{"patientid": st.add_patient(values)["patientid"], "errormessage": ""}])

    @practice
    async def get_patient(request: Request) -> Response:
        row = patient_or_404(request)
        if isinstance(row, Response):
            return row
        return JSONResponse([public(row, request.query_params.get("showcustomfields") == "true")])

    @practice
    async def update_patient(request: Request) -> Response:
        row = patient_or_404(request)
        if isinstance(row, Response):
            return row
        values = await form(request)
        unknown = [k for k in values if k not in {*_SEARCHABLE, "dob", "departmentid", "status", "zip", "sex",
                                                   "address1", "city", "state", "middlename", "notes"}]
        if unknown:
            return error(400, "Invalid field.", "One of the fields is not a patient field.")
        row.update({k: digits(v)[-10:] if k in _PHONES else v for k, v in values.items()})
        st.touch(row)
        return JSONResponse([{"patientid": row["patientid"]}])

    @practice
    async def set_custom(request: Request) -> Response:
        row = patient_or_404(request)
        if isinstance(row, Response):
            return row
        given = json.loads((await form(request)).get("customfields") or "[]")
        kept = {str(c["customfieldid"]): c for c in row["customfields"]}
        kept |= {str(c["customfieldid"]): {"customfieldid": str(c["customfieldid"]),
                                           "customfieldvalue": str(c["customfieldvalue"])} for c in given}
        row["customfields"] = list(kept.values())
        st.touch(row)
        return JSONResponse({"success": "true"})

    @practice
    async def by_custom(request: Request) -> Response:
        cf, value = request.path_params["customfieldid"], request.path_params["value"]
        rows = [r for r in st.patients.values() if any(
            c["customfieldid"] == cf and c["customfieldvalue"] == value for c in r["customfields"])]
        return listing(request, "patients", rows, 1000, custom=True)

    def changed(kind: str, rows: Callable[[], list[dict[str, Any]]]) -> Handler:
        @practice
        async def feed(request: Request) -> Response:
            since = request.query_params.get("showprocessedstartdatetime")
            start = datetime.strptime(since, "%m/%d/%Y %H:%M:%S") if since else datetime.min
            hits = sorted((r for r in rows() if r["_modified"].replace(tzinfo=None, microsecond=0) >= start),
                          key=lambda r: r["_modified"])
            return listing(request, kind, hits, 5000)

        return feed

    @practice
    async def get_appointment(request: Request) -> Response:
        row = st.appointments.get(request.path_params["appointmentid"])
        return JSONResponse([public(row)]) if row else error(404, "The appointment is not found.")

    @practice
    async def book(request: Request) -> Response:
        row = st.appointments.get(request.path_params["appointmentid"])
        values = await form(request)
        if row is None:
            return error(404, "The appointment is not found.")
        if row["appointmentstatus"] != "o":
            return error(409, "The appointment is not available.", "The slot is already booked.")
        if values.get("patientid") not in st.patients:
            return error(400, "Invalid patientid.")
        row.update({k: v for k, v in values.items() if k in ("patientid", "appointmenttypeid", "departmentid",
                                                              "reasonid", "bookingnote")} | {"appointmentstatus": "f"})
        st.touch(row)
        return JSONResponse([public(row)])

    api = [
        ("GET", f"{V1}/ping", ping),
        ("GET", f"{V1}/patients/search", quick_search),
        ("GET", f"{V1}/patients/enhancedbestmatch", bestmatch),
        ("GET", f"{V1}/patients/changed", changed("patients", lambda: list(st.patients.values()))),
        ("GET", f"{V1}/patients/customfields/{{customfieldid}}/{{value}}", by_custom),
        ("GET", f"{V1}/patients", find_patients),
        ("POST", f"{V1}/patients", create_patient),
        ("GET", f"{V1}/patients/{{patientid}}", get_patient),
        ("PUT", f"{V1}/patients/{{patientid}}", update_patient),
        ("PUT", f"{V1}/patients/{{patientid}}/customfields", set_custom),
        ("GET", f"{V1}/appointments/changed", changed("appointments", lambda: [
            a for a in st.appointments.values() if a["appointmentstatus"] != "o"])),
        ("GET", f"{V1}/appointments/{{appointmentid}}", get_appointment),
        ("PUT", f"{V1}/appointments/{{appointmentid}}", book),
    ]
    app = Starlette(routes=[Route("/oauth2/v1/token", token_endpoint(st, wire), methods=["POST"]),
                            *control_routes(st), *(guarded(st, wire, m, p, h) for m, p, h in api)])
    app.state.sandbox = st
    return app


def token_endpoint(st: AthenaState, wire: AthenaWire) -> Handler:
    async def token(request: Request) -> Response:
        st.calls["POST /oauth2/v1/token"] += 1
        if st.knobs.fail_next > 0:
            st.knobs.fail_next -= 1
            return wire.server_error(st.knobs.fail_status)
        if not st.token_allowed():
            return error(429, "rate_limit_exceeded", "Too many token requests: blocked for the rest of the minute.")
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        client_id, _, secret = (base64.b64decode(encoded).decode() if scheme == "Basic" else "").partition(":")
        values = await form(request)
        if values.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        tokens = st.tokens
        if getattr(tokens, "disabled", False) or (client_id, secret) != (tokens.client_id, tokens.client_secret):
            return wire.token_error("invalid_client")
        return wire.token_response(st, tokens.issue_access(), None)

    return token
