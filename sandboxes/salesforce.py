"""Salesforce REST sandbox: sObjects, external-id upsert, SOQL query paging, SOSL search, describe, OAuth.

Wire facts from ../shared/reference (Salesforce section) and the request shapes in
../shared/provider-specs/salesforce/postman-salesforce-apis: `/services/data/vXX.X/...` on the org's
instance_url, error bodies as a JSON array of `{message, errorCode, fields}`, 401 INVALID_SESSION_ID on an
expired session, 403 REQUEST_LIMIT_EXCEEDED over the API quota, `Sforce-Limit-Info` on every response,
token responses without `expires_in` (and without a refresh token unless rotation is on), delete to the
Recycle Bin (GET then 404 ENTITY_IS_DELETED), and `nextRecordsUrl` paging honouring
`Sforce-Query-Options: batchSize=`, and sObject Collections (update by Id, upsert by external id: see
sandboxes/salesforce_collections.py). Ids are 18 characters (15 + case-safe suffix); 15-character ids are
accepted wherever an id goes. API versions outside v31.0–v62.0 answer 404 (v21–v30 were retired in Summer
'25). sObject and field names are case-insensitive, as in Salesforce. `/limits` needs the "View Setup and
Configuration" permission (`view_setup`, Salesforce's REST docs for the Limits resource); without it the
sandbox answers 403 INSUFFICIENT_ACCESS (the error code is our best reading, not a captured response).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandboxes import salesforce_schema as schema
from sandboxes.common import Handler, SandboxState, TokenIssuer, control_routes, guarded, oauth_routes
from sandboxes.salesforce_collections import collection_handlers
from sandboxes.salesforce_query import QueryError, evaluate, parse_soql
from sandboxes.salesforce_search import parse_sosl, sosl_hits
from sandboxes.salesforce_wire import ORG_ID, USER_ID, SalesforceWire, errors, public, sf_time, versioned

DATA = "/services/data/{version}"
SOBJ = DATA + "/sobjects/{sobject}"


@dataclass
class SalesforceState(SandboxState):
    instance_url: str = "https://sandbox-org.my.salesforce.com"
    api_usage_limit: int = 100_000
    api_usage: int = 0
    view_setup: bool = True  # the connected user's "View Setup and Configuration" permission
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    cursors: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # False: a fresh org without the two custom fields our installer creates (Tooling API CustomField create).
    installed: bool = True
    missing_fields: set[tuple[str, str]] = field(default_factory=set)  # (sObject, field) not created yet
    custom_fields: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)  # created via Tooling

    def __post_init__(self) -> None:
        if not self.installed:
            self.missing_fields |= {(s, f) for s in schema.ID_PREFIX for f in schema.INSTALLER_FIELDS}

    def known_fields(self, sobject: str) -> dict[str, tuple[str, str]]:
        """The sObject's fields in this org: the modelled schema less uncreated fields, plus Tooling creations."""
        fields = {n: f for n, f in schema.fields_of(sobject).items() if (sobject, n) not in self.missing_fields}
        return fields | self.custom_fields.get(sobject, {})
    _ids: count[int] = field(default_factory=lambda: count(1))

    def add(self, sobject: str, values: dict[str, Any]) -> dict[str, Any]:
        """Insert as the API would (also used by tests to seed data without API calls)."""
        stamp = sf_time(self)
        row: dict[str, Any] = dict.fromkeys(schema.fields_of(sobject))
        row |= schema.DEFAULTS.get(sobject, {}) | values
        row |= {
            "Id": schema.full_id(f"{schema.ID_PREFIX[sobject]}SB{next(self._ids):010d}"),
            "IsDeleted": False,
            "OwnerId": values.get("OwnerId") or USER_ID,
            "CreatedDate": stamp,
        }
        self.records.setdefault(sobject, {})[row["Id"]] = row
        self.touch(sobject, row)
        return row

    def touch(self, sobject: str, row: dict[str, Any]) -> None:
        row["LastModifiedDate"] = row["SystemModstamp"] = sf_time(self)
        if "Name" in row and "LastName" in row:
            row["Name"] = " ".join(p for p in (row.get("FirstName"), row.get("LastName")) if p)
        if sobject == "Case" and row.get("CaseNumber") is None:
            row["CaseNumber"] = f"{len(self.records.get('Case', {})):08d}"

    def take_interval_budget(self) -> int | None:
        # Salesforce's limit is the org's rolling 24-hour request quota, not a short window.
        return self.api_usage_limit - self.api_usage - 1

    def live(self, sobject: str) -> list[dict[str, Any]]:
        return [r for r in self.records.get(sobject, {}).values() if not r["IsDeleted"]]


def _order_key(name: str, nulls_last: bool | None, desc: bool) -> Callable[[dict[str, Any]], tuple[bool, str]]:
    # Salesforce timestamps share one fixed-width format, so their strings sort chronologically. Nulls come
    # first unless NULLS LAST (SOQL's default is NULLS FIRST in both directions); the sort is then reversed.
    last = bool(nulls_last)
    return lambda row: ((row.get(name) is None) == (last != desc), str(row.get(name) or ""))


def create_app(state: SalesforceState | None = None) -> Starlette:
    """The Salesforce sandbox app; `app.state.sandbox` is the SalesforceState tests inspect and steer."""
    st = state or SalesforceState(tokens=TokenIssuer("salesforce", 7200))
    wire = SalesforceWire()

    def on_sobject(handler: Callable[[Request, str], Awaitable[Response]]) -> Handler:
        async def endpoint(request: Request) -> Response:
            sobject = schema.canonical_sobject(str(request.path_params["sobject"]))
            if sobject is None:
                return errors(404, "NOT_FOUND", "The requested resource does not exist")
            return await handler(request, sobject)

        return endpoint

    def on_row(handler: Callable[[Request, str, dict[str, Any]], Awaitable[Response]]) -> Handler:
        @on_sobject
        async def endpoint(request: Request, sobject: str) -> Response:
            row = st.records.get(sobject, {}).get(schema.full_id(request.path_params["record_id"]) or "")
            if row is None:
                return errors(404, "NOT_FOUND", "The requested resource does not exist")
            if row["IsDeleted"]:
                return errors(404, "ENTITY_IS_DELETED", "entity is deleted")
            return await handler(request, sobject, row)

        return endpoint

    def check_fields(sobject: str, values: dict[str, Any], creating: bool) -> Response | None:
        known, ro = st.known_fields(sobject), schema.read_only(sobject)
        for name, value in list(values.items()):
            if name in known and known[name][0] == "reference" and isinstance(value, str) and schema.full_id(value):
                values[name] = schema.full_id(value)  # a 15-character id is stored in its 18-character form
            if name not in known:
                return errors(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {sobject}")
            if name in ro:
                return errors(400, "INVALID_FIELD_FOR_INSERT_UPDATE", f"Unable to create/update fields: {name}", [name])
        missing = [n for n in schema.required(sobject) if creating and not values.get(n)]
        if missing:
            return errors(400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: {missing}", missing)
        key = values.get(schema.EXTERNAL_ID_FIELD)
        if key is not None and any(r.get(schema.EXTERNAL_ID_FIELD) == key for r in st.live(sobject)):
            return errors(400, "DUPLICATE_VALUE", f"duplicate value found: {schema.EXTERNAL_ID_FIELD}")
        return None

    @on_sobject
    async def create(request: Request, sobject: str) -> Response:
        values = await request.json()
        problem = check_fields(sobject, values, creating=True)
        if problem:
            return problem
        row = st.add(sobject, values)
        return JSONResponse({"id": row["Id"], "success": True, "errors": []}, status_code=201)

    @on_row
    async def read(request: Request, sobject: str, row: dict[str, Any]) -> Response:
        wanted = request.query_params.get("fields")
        return JSONResponse(public(sobject, row, request.path_params["version"], wanted.split(",") if wanted else None))

    @on_row
    async def update(request: Request, sobject: str, row: dict[str, Any]) -> Response:
        values = await request.json()
        problem = check_fields(sobject, {k: v for k, v in values.items() if k != schema.EXTERNAL_ID_FIELD}, False)
        if problem:
            return problem
        row.update(values)
        st.touch(sobject, row)
        return Response(status_code=204)

    @on_row
    async def delete(request: Request, sobject: str, row: dict[str, Any]) -> Response:
        row["IsDeleted"] = True  # to the Recycle Bin: still there for queryAll and undelete
        st.touch(sobject, row)
        return Response(status_code=204)

    @on_sobject
    async def by_external_id(request: Request, sobject: str) -> Response:
        name, value = request.path_params["field"], request.path_params["value"]
        if name != "Id" and "x" not in st.known_fields(sobject).get(name, ("", ""))[1]:
            return errors(404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {name}")
        if name == "Id":
            value = schema.full_id(value) or value
        hits = [r for r in st.live(sobject) if str(r.get(name)) == value]
        version = request.path_params["version"]
        if len(hits) > 1:
            return JSONResponse(
                [public(sobject, r, version, ["Id"])["attributes"]["url"] for r in hits], status_code=300
            )
        if request.method == "GET":
            if not hits:
                return errors(404, "NOT_FOUND", "The requested resource does not exist")
            wanted = request.query_params.get("fields")
            return JSONResponse(public(sobject, hits[0], version, wanted.split(",") if wanted else None))
        values = await request.json()
        if name in values:
            return errors(400, "INVALID_FIELD", f"{name} is the external id and cannot be set in the body")
        problem = check_fields(sobject, values, creating=not hits)
        if problem:
            return problem
        if hits:
            hits[0].update(values)
            st.touch(sobject, hits[0])
            return JSONResponse({"id": hits[0]["Id"], "success": True, "errors": [], "created": False})
        row = st.add(sobject, values | {name: value})
        return JSONResponse({"id": row["Id"], "success": True, "errors": [], "created": True}, status_code=201)

    def page(locator: str, rows: list[dict[str, Any]], start: int, size: int, version: str) -> Response:
        body: dict[str, Any] = {"totalSize": len(rows), "done": start + size >= len(rows)}
        body["records"] = rows[start : start + size]
        if not body["done"]:
            body["nextRecordsUrl"] = f"/services/data/{version}/query/{locator}-{start + size}"
        return JSONResponse(body)

    def batch_size(request: Request) -> int:
        options = request.headers.get("Sforce-Query-Options", "")
        asked = int(options.split("batchSize=")[1].split(",")[0]) if "batchSize=" in options else 2000
        return st.page_size(max(200, asked), 2000)

    async def query(request: Request) -> Response:
        version = request.path_params["version"]
        try:
            soql = parse_soql(request.query_params.get("q", ""))
            sobject = schema.canonical_sobject(soql.sobject)
            if sobject is None:
                raise QueryError("INVALID_TYPE", f"sObject type '{soql.sobject}' is not supported.")
            soql.sobject = sobject

            def field(name: str) -> str:
                found = schema.canonical_field(sobject, name)
                if found is None:
                    raise QueryError("INVALID_FIELD", f"No such column '{name}' on entity '{sobject}'.")
                return found

            soql.fields = [field(name) for name in soql.fields]
            soql.order = [(field(name), desc, nulls_last) for name, desc, nulls_last in soql.order]
            rows = [r for r in st.live(sobject) if soql.where is None or evaluate(soql.where, r)]
        except QueryError as exc:
            return errors(400, exc.code, exc.message)
        for name, desc, nulls_last in reversed(soql.order):
            rows.sort(key=_order_key(name, nulls_last, desc), reverse=desc)
        rows = rows[: soql.limit] if soql.limit is not None else rows
        shaped = [public(soql.sobject, r, version, soql.fields) for r in rows]
        locator = f"01gSB{len(st.cursors):013d}"
        st.cursors[locator] = shaped
        return page(locator, shaped, 0, batch_size(request), version)

    async def query_more(request: Request) -> Response:
        locator, _, start = request.path_params["locator"].rpartition("-")
        if locator not in st.cursors or not start.isdigit():
            return errors(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return page(locator, st.cursors[locator], int(start), batch_size(request), request.path_params["version"])

    async def search(request: Request) -> Response:
        try:
            sosl = parse_sosl(request.query_params.get("q", ""))
        except QueryError as exc:
            return errors(400, exc.code, exc.message)
        found = [public(s, r, request.path_params["version"], f or ["Id"]) for s, r, f in sosl_hits(st, sosl)]
        return JSONResponse({"searchRecords": found})

    @on_sobject
    async def describe(request: Request, sobject: str) -> Response:
        return JSONResponse(schema.describe(sobject, request.path_params["version"], st.known_fields(sobject)))

    async def create_custom_field(request: Request) -> Response:
        """Tooling API `POST …/tooling/sobjects/CustomField` {FullName: "Contact.X__c", Metadata: {…}}."""
        body = await request.json()
        created = schema.tooling_field(body, st.known_fields)
        if isinstance(created, Response):
            return created
        sobject, name, spec = created
        # Activity fields (Task/Event share them) are created on Activity and appear on both.
        for target in ("Task", "Event") if sobject == "Activity" else (sobject,):
            st.missing_fields.discard((target, name))
            if name not in schema.fields_of(target):
                st.custom_fields.setdefault(target, {})[name] = spec
        return JSONResponse({"id": f"00N{next(st._ids):012d}", "success": True, "errors": [], "warnings": [],
                             "infos": []}, status_code=201)

    async def limits(request: Request) -> Response:
        if not st.view_setup:
            return errors(403, "INSUFFICIENT_ACCESS", "insufficient access rights: View Setup and Configuration")
        used = st.api_usage
        return JSONResponse({"DailyApiRequests": {"Max": st.api_usage_limit, "Remaining": st.api_usage_limit - used}})

    async def userinfo(request: Request) -> Response:
        return JSONResponse({"sub": f"https://login.salesforce.com/id/{ORG_ID}/{USER_ID}", "organization_id": ORG_ID})

    async def resources(request: Request) -> Response:
        base = f"/services/data/{request.path_params['version']}"
        return JSONResponse({name: f"{base}/{name}" for name in ("sobjects", "query", "search", "limits")})

    async def versions(request: Request) -> Response:
        return JSONResponse([{"label": "Winter '25", "url": "/services/data/v62.0", "version": "62.0"}])

    update_collection, upsert_collection = collection_handlers(st, check_fields)
    api = [
        ("PATCH", DATA + "/composite/sobjects", update_collection),
        ("PATCH", DATA + "/composite/sobjects/{sobject}/{field}", upsert_collection),
        ("GET", DATA, resources),
        ("GET", DATA + "/limits", limits),
        ("GET", DATA + "/query", query),
        ("GET", DATA + "/query/{locator}", query_more),
        ("GET", DATA + "/search", search),
        ("GET", SOBJ + "/describe", describe),
        ("POST", DATA + "/tooling/sobjects/CustomField", create_custom_field),
        ("POST", SOBJ, create),
        ("GET", SOBJ + "/{record_id}", read),
        ("PATCH", SOBJ + "/{record_id}", update),
        ("DELETE", SOBJ + "/{record_id}", delete),
        ("GET", SOBJ + "/{field}/{value}", by_external_id),
        ("PATCH", SOBJ + "/{field}/{value}", by_external_id),
        ("GET", "/services/oauth2/userinfo", userinfo),
    ]
    routes = [
        *oauth_routes(st, wire, token_paths=["/services/oauth2/token"], authorize_path="/services/oauth2/authorize"),
        *control_routes(st),
        *(guarded(st, wire, method, path, versioned(handler) if "{version}" in path else handler)
          for method, path, handler in api),
    ]
    routes.append(Route("/services/data", versions, methods=["GET"]))
    app = Starlette(routes=routes)
    app.state.sandbox = st
    return app
