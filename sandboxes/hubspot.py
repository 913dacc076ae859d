"""HubSpot CRM v3 sandbox: contacts/deals/tickets/notes, search, properties, GDPR delete, OAuth v1/v3.

Wire facts from ../shared/reference (HubSpot section): Bearer tokens that expire after 1800 s, refresh
grant with client credentials in the form body, `{"status":"error","category":...}` error bodies,
429 + `X-HubSpot-RateLimit-*` headers, search with filterGroups and `paging.next.after`, archive on
DELETE (GET then 404 unless `archived=true`), and permanent `gdpr-delete` for contacts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandboxes import hubspot_schema as schema
from sandboxes.common import (
    SandboxState,
    TokenIssuer,
    control_routes,
    guarded,
    iso_ms,
    new_correlation_id,
    oauth_routes,
)
from sandboxes.hubspot_search import matches, sort_key

OBJ = "/crm/v3/objects/{object_type}"
NOTE_TO_CONTACT = 202  # HUBSPOT_DEFINED association type id


@dataclass
class HsRecord:
    id: str
    object_type: str
    properties: dict[str, str | None]
    created_at: str
    updated_at: str
    archived: bool = False
    associations: list[tuple[str, str, int]] = field(default_factory=list)  # (to type, to id, type id)


@dataclass
class HubSpotState(SandboxState):
    portal_id: int = 62515
    records: dict[str, dict[str, HsRecord]] = field(default_factory=dict)
    next_id: int = 1001

    def add(self, object_type: str, properties: dict[str, Any]) -> HsRecord:
        """Create a record as the API would (also used by tests to seed data without API calls)."""
        now = iso_ms(self.now())
        record_id = str(self.next_id)
        self.next_id += 1
        props = {k: _str(v) for k, v in properties.items()}
        props |= {"hs_object_id": record_id, schema.CREATED_PROPERTY[object_type]: now}
        record = HsRecord(record_id, object_type, props, now, now)
        self._touch(record, now)
        self.records.setdefault(object_type, {})[record_id] = record
        return record

    def _touch(self, record: HsRecord, now: str) -> None:
        record.updated_at = now
        record.properties[schema.MODIFIED_PROPERTY[record.object_type]] = now
        if record.object_type == "contacts":
            for source, target in (("phone", "phone_number"), ("mobilephone", "mobile_number")):
                record.properties[f"hs_searchable_calculated_{target}"] = schema.searchable_phone(
                    record.properties.get(source)
                )

    def update(self, record: HsRecord, properties: dict[str, Any]) -> None:
        record.properties.update({k: _str(v) for k, v in properties.items()})
        self._touch(record, iso_ms(self.now()))

    def find(self, object_type: str, value: str, id_property: str | None, archived: bool) -> HsRecord | None:
        for record in self.records.get(object_type, {}).values():
            if record.archived != archived:
                continue
            if (id_property is None and record.id == value) or (
                id_property is not None and (record.properties.get(id_property) or "").lower() == value.lower()
            ):
                return record
        return None


def _str(value: Any) -> str | None:
    # HubSpot stores every property value as a string and returns it as one.
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def error(status: int, category: str, message: str, **extra: Any) -> JSONResponse:
    body = {"status": "error", "message": message, "correlationId": new_correlation_id(), "category": category}
    return JSONResponse(body | extra, status_code=status)


class HubSpotWire:
    def unauthorized(self, reason: str) -> Response:
        if reason == "expired":
            return error(
                401, "EXPIRED_AUTHENTICATION", "The OAuth token used to make this call expired 1 minute(s) ago."
            )
        return error(401, "INVALID_AUTHENTICATION", "Authentication credentials not found.")

    def rate_limited(self, state: HubSpotState) -> Response:
        response = JSONResponse(
            {
                "status": "error",
                "message": "You have reached your ten_secondly_rolling limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": new_correlation_id(),
                "policyName": "TEN_SECONDLY_ROLLING",
                "requestId": new_correlation_id(),
            },
            status_code=429,
        )
        self.decorate(response, state, remaining=0)
        if state.knobs.retry_after is not None:  # HubSpot's own Retry-After is unverified: a knob
            response.headers["Retry-After"] = state.knobs.retry_after
        return response

    def server_error(self, status: int) -> Response:
        return error(status, "INTERNAL_ERROR", "internal error")

    def decorate(self, response: Response, state: HubSpotState, remaining: int | None = None) -> None:
        limit = state.knobs.interval_limit or 100
        if remaining is None:
            remaining = max(0, limit - len(state._window))
        response.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] = str(int(state.knobs.interval_seconds * 1000))
        response.headers["X-HubSpot-RateLimit-Max"] = str(limit)
        response.headers["X-HubSpot-RateLimit-Remaining"] = str(remaining)

    def token_response(self, state: HubSpotState, access: str, refresh: str | None) -> Response:
        # HubSpot always returns the refresh token (the same one unless rotated).
        return JSONResponse(
            {
                "token_type": "bearer",
                "refresh_token": refresh,
                "access_token": access,
                "expires_in": state.tokens.ttl_seconds,
                "token_use": "access_token",
                "hub_id": state.portal_id,
            }
        )

    def token_error(self, code: str) -> Response:
        message = "refresh token is invalid, expired or revoked"
        status = "BAD_REFRESH_TOKEN" if code == "invalid_grant" else "BAD_CLIENT_ID"
        body = {"error": code, "error_description": message, "status": status, "message": message}
        return JSONResponse(body, status_code=400)


def _public(record: HsRecord, wanted: list[str] | None) -> dict[str, Any]:
    names = wanted if wanted is not None else list(record.properties)
    props = {n: record.properties.get(n) for n in names}
    props["hs_object_id"] = record.id
    for stamp in (schema.CREATED_PROPERTY, schema.MODIFIED_PROPERTY):
        props[stamp[record.object_type]] = record.properties.get(stamp[record.object_type])
    body: dict[str, Any] = {
        "id": record.id,
        "properties": props,
        "createdAt": record.created_at,
        "updatedAt": record.updated_at,
        "archived": record.archived,
    }
    if record.archived:
        body["archivedAt"] = record.updated_at
    return body


def _wanted(request: Request) -> list[str] | None:
    raw = request.query_params.get("properties")
    return [p for p in raw.split(",") if p] if raw else None


def _validate(state: HubSpotState, object_type: str, props: dict[str, Any], *, creating: bool) -> Response | None:
    known, ro = schema.property_names(object_type), schema.read_only(object_type)
    problems = [
        {"isValid": False, "message": f'Property "{n}" does not exist', "error": "PROPERTY_DOESNT_EXIST", "name": n}
        for n in props
        if n not in known
    ] + [
        {"isValid": False, "message": f"{n} is a read only property", "error": "READ_ONLY_VALUE", "name": n}
        for n in props
        if n in ro
    ]
    if creating:
        problems += [
            {"isValid": False, "message": f"{n} is required", "error": "REQUIRED_PROPERTY", "name": n}
            for n in schema.REQUIRED_ON_CREATE.get(object_type, [])
            if not props.get(n)
        ]
    if problems:
        return error(400, "VALIDATION_ERROR", f"Property values were not valid: {json.dumps(problems)}")
    return None


def _conflict(state: HubSpotState, object_type: str, props: dict[str, Any], own_id: str | None) -> Response | None:
    for record in state.records.get(object_type, {}).values():
        if record.id == own_id or record.archived:
            continue
        email = props.get("email")
        if object_type == "contacts" and email and (record.properties.get("email") or "").lower() == email.lower():
            return error(409, "CONFLICT", f"Contact already exists. Existing ID: {record.id}", error="CONTACT_EXISTS")
        for unique in schema.UNIQUE_PROPERTIES:
            if props.get(unique) is not None and record.properties.get(unique) == _str(props[unique]):
                # The exact real body for a unique-property clash is unverified; 409 is the documented class.
                return error(409, "CONFLICT", f"A record with {unique} already exists. Existing ID: {record.id}")
    return None


def create_app(state: HubSpotState | None = None) -> Starlette:
    """The HubSpot sandbox app; `app.state.sandbox` is the HubSpotState tests inspect and steer."""
    st = state or HubSpotState(tokens=TokenIssuer("hubspot", 1800))
    st.tokens.echo_refresh_token = True
    wire = HubSpotWire()

    def table(request: Request) -> tuple[str, dict[str, HsRecord]] | Response:
        object_type = request.path_params["object_type"]
        if object_type not in schema.OBJECT_TYPE_IDS:
            return error(400, "VALIDATION_ERROR", f"Unable to infer object type from: {object_type}")
        return object_type, st.records.setdefault(object_type, {})

    async def create(request: Request) -> Response:
        got = table(request)
        if isinstance(got, Response):
            return got
        object_type, _ = got
        body = await request.json()
        props = body.get("properties") or {}
        problem = _validate(st, object_type, props, creating=True) or _conflict(st, object_type, props, None)
        if problem:
            return problem
        record = st.add(object_type, props)
        for assoc in body.get("associations") or []:
            for kind in assoc.get("types", []):
                record.associations.append(("contacts", str(assoc["to"]["id"]), int(kind["associationTypeId"])))
        return JSONResponse(_public(record, None), status_code=201)

    async def read(request: Request) -> Response:
        got = table(request)
        if isinstance(got, Response):
            return got
        object_type, _ = got
        q = request.query_params
        archived = q.get("archived", "false") == "true"
        record = st.find(object_type, request.path_params["record_id"], q.get("idProperty"), archived)
        if record is None:
            return error(404, "OBJECT_NOT_FOUND", "resource not found")
        body = _public(record, _wanted(request))
        if "associations" in q:
            body["associations"] = {
                "contacts": {"results": [{"id": i, "type": "note_to_contact"} for _, i, _ in record.associations]}
            }
        return JSONResponse(body)

    async def patch(request: Request) -> Response:
        got = table(request)
        if isinstance(got, Response):
            return got
        object_type, _ = got
        record = st.find(object_type, request.path_params["record_id"], request.query_params.get("idProperty"), False)
        if record is None:
            return error(404, "OBJECT_NOT_FOUND", "resource not found")
        props = (await request.json()).get("properties") or {}
        problem = _validate(st, object_type, props, creating=False) or _conflict(st, object_type, props, record.id)
        if problem:
            return problem
        st.update(record, props)
        return JSONResponse(_public(record, None))

    async def archive(request: Request) -> Response:
        got = table(request)
        if isinstance(got, Response):
            return got
        record = st.find(got[0], request.path_params["record_id"], None, False)
        if record is not None:  # HubSpot answers 204 for an unknown or already archived id too
            record.archived = True
            record.updated_at = iso_ms(st.now())
        return Response(status_code=204)

    async def gdpr_delete(request: Request) -> Response:
        body = await request.json()
        record = st.find("contacts", str(body.get("objectId", "")), body.get("idProperty"), False) or st.find(
            "contacts", str(body.get("objectId", "")), body.get("idProperty"), True
        )
        if record is None:
            return error(404, "OBJECT_NOT_FOUND", "resource not found")
        del st.records["contacts"][record.id]
        return Response(status_code=204)

    async def search(request: Request) -> Response:
        got = table(request)
        if isinstance(got, Response):
            return got
        object_type, rows = got
        body = await request.json()
        limit = int(body.get("limit", 10))
        if limit > 200:
            return error(400, "VALIDATION_ERROR", "limit must be less than or equal to 200")
        hits = [r for r in rows.values() if not r.archived and matches(r, body, schema.QUERY_PROPERTIES[object_type])]
        for sort in reversed(body.get("sorts") or []):
            hits.sort(key=sort_key(sort), reverse=str(sort.get("direction", "ASCENDING")) == "DESCENDING")
        start = int(body.get("after") or 0)
        size = st.page_size(limit, 200)
        wanted = list(dict.fromkeys([*schema.DEFAULT_PROPERTIES[object_type], *(body.get("properties") or [])]))
        page = [_public(r, wanted) for r in hits[start : start + size]]
        out: dict[str, Any] = {"total": len(hits), "results": page}
        if start + size < len(hits):
            out["paging"] = {"next": {"after": str(start + size), "link": f"?after={start + size}"}}
        return JSONResponse(out)

    async def list_objects(request: Request) -> Response:
        got = table(request)
        if isinstance(got, Response):
            return got
        _, rows = got
        q = request.query_params
        archived = q.get("archived", "false") == "true"
        hits = [r for r in rows.values() if r.archived == archived]
        start, size = int(q.get("after") or 0), st.page_size(int(q.get("limit", 10)), 100)
        out: dict[str, Any] = {"results": [_public(r, _wanted(request)) for r in hits[start : start + size]]}
        if start + size < len(hits):
            out["paging"] = {"next": {"after": str(start + size), "link": f"?after={start + size}"}}
        return JSONResponse(out)

    async def properties(request: Request) -> Response:
        got = table(request)
        if isinstance(got, Response):
            return got
        return JSONResponse({"results": schema.property_definitions(got[0])})

    api = [
        ("POST", "/crm/v3/objects/contacts/gdpr-delete", gdpr_delete),
        ("POST", OBJ + "/search", search),
        ("GET", OBJ, list_objects),
        ("POST", OBJ, create),
        ("GET", OBJ + "/{record_id}", read),
        ("PATCH", OBJ + "/{record_id}", patch),
        ("DELETE", OBJ + "/{record_id}", archive),
        ("GET", "/crm/v3/properties/{object_type}", properties),
    ]
    routes = [
        *oauth_routes(st, wire, token_paths=["/oauth/v1/token", "/oauth/v3/token"], authorize_path="/oauth/authorize"),
        *control_routes(st),
        *(guarded(st, wire, method, path, handler) for method, path, handler in api),
    ]
    app = Starlette(routes=routes)
    app.state.sandbox = st
    return app
