"""Zoho CRM v8 sandbox app: records, upsert, search, list with If-Modified-Since and page tokens, Notes on a
Contact, fields metadata, the Recycle Bin, users, and the accounts server's authorize and token endpoints.

One app answers every data centre: the request's host (accounts.zoho.eu, www.zohoapis.sa…) says which.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from sandboxes.common import Handler, TokenIssuer, control_routes, guarded
from sandboxes.zoho import search
from sandboxes.zoho.state import ACCOUNTS_OF, DEFAULTS, KEY_FIELD, MODULES, OWNER, ZohoState
from sandboxes.zoho.wire import (
    ZohoWire,
    created_field,
    duplicate,
    error,
    field_definitions,
    invalid_id,
    outcome,
    public,
    success,
    validate,
    wanted,
)

V8 = "/crm/v8"


def create_app(state: ZohoState | None = None) -> Starlette:
    """The Zoho sandbox app; `app.state.sandbox` is the ZohoState tests inspect and steer."""
    st = state or ZohoState(tokens=TokenIssuer("zoho", 3600))
    wire = ZohoWire()

    def token_of(request: Request) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme != "Zoho-oauthtoken" or not token:
            return None
        # A token only works on the API host of the data centre that issued it.
        return token if st.token_dc.get(token, st.default_dc) == st.dc_of(request.url.hostname) else None

    def on_module(handler: Callable[[Request, str], Awaitable[Response]]) -> Handler:
        async def endpoint(request: Request) -> Response:
            module = request.path_params["module"]
            if module not in MODULES:
                return error(400, "INVALID_MODULE", "The module name given seems to be invalid",
                             {"resource_path_index": 2})
            return await handler(request, module)

        return endpoint

    def write(module: str, rows: list[dict[str, Any]], *, upsert_on: list[str] | None = None) -> list[dict[str, Any]]:
        items = []
        for index, values in enumerate(rows):
            existing = None
            for name in upsert_on or []:
                if values.get(name) is not None:
                    existing = st.find(module, str(values[name]), name)
                    if existing is not None:
                        break
            problem = validate(module, values, index, creating=existing is None, state=st) or duplicate(
                st, module, values, existing["id"] if existing else None, index)
            if problem is not None:
                items.append(problem)
            elif existing is not None:
                existing.update(values)
                st.touch(existing)
                items.append(success(existing, "record updated", action="update", duplicate_field=name))
            else:
                items.append(success(st.add(module, values), "record added",
                                     **({"action": "insert"} if upsert_on else {})))
        return items

    async def rows_of(request: Request) -> list[dict[str, Any]] | Response:
        body = await request.json()
        rows = body.get("data") if isinstance(body, dict) else None
        if not isinstance(rows, list) or not rows:
            return error(400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing",
                         {"param_name": "data"})
        if len(rows) > 100:
            return error(400, "LIMIT_EXCEEDED", "Record count exceeded", {"limit": 100})
        return [dict(r) | {k: v for k, v in DEFAULTS.get(request.path_params["module"], {}).items() if k not in r}
                for r in rows] if request.method == "POST" else rows

    @on_module
    async def create(request: Request, module: str) -> Response:
        rows = await rows_of(request)
        return rows if isinstance(rows, Response) else outcome(write(module, rows), 201)

    @on_module
    async def upsert(request: Request, module: str) -> Response:
        rows = await rows_of(request)
        if isinstance(rows, Response):
            return rows
        check = (await request.json()).get("duplicate_check_fields") or [KEY_FIELD]
        return outcome(write(module, rows, upsert_on=list(check)), 200)

    def located(request: Request, module: str) -> dict[str, Any] | None:
        external = request.headers.get("x-external")
        if external:
            return st.find(module, request.path_params["record_id"], external.partition(".")[2])
        return st.find(module, request.path_params["record_id"])

    @on_module
    async def read(request: Request, module: str) -> Response:
        row = located(request, module)
        if row is None:
            return Response(status_code=204)  # no such record, or it is in the Recycle Bin
        return JSONResponse({"data": [public(row, wanted(request))]})

    @on_module
    async def update_one(request: Request, module: str) -> Response:
        rows = await rows_of(request)
        if isinstance(rows, Response):
            return rows
        row = located(request, module)
        if row is None:
            return outcome([invalid_id(request.path_params["record_id"])], 200)
        problem = validate(module, rows[0], 0, creating=False, state=st) or duplicate(st, module, rows[0], row["id"], 0)
        if problem:
            return outcome([problem], 200)
        row.update({k: v for k, v in rows[0].items() if k != "id"})
        st.touch(row)
        return outcome([success(row, "record updated")], 200)

    @on_module
    async def update_many(request: Request, module: str) -> Response:
        rows = await rows_of(request)
        if isinstance(rows, Response):
            return rows
        items = []
        for index, values in enumerate(rows):
            row = st.find(module, str(values.get("id")))
            problem = invalid_id(str(values.get("id"))) if row is None else (
                validate(module, values, index, creating=False, state=st)
                or duplicate(st, module, values, row["id"], index))
            if problem is not None or row is None:
                items.append(problem or invalid_id(str(values.get("id"))))
                continue
            row.update({k: v for k, v in values.items() if k != "id"})
            st.touch(row)
            items.append(success(row, "record updated"))
        return outcome(items, 200)

    @on_module
    async def delete(request: Request, module: str) -> Response:
        row = located(request, module)
        if row is None:
            return outcome([invalid_id(request.path_params["record_id"])], 200)
        st.recycle_bin[row["id"]] = module
        st.touch(row)
        return outcome([{"code": "SUCCESS", "details": {"id": row["id"]}, "message": "record deleted",
                         "status": "success"}], 200)

    async def purge(request: Request) -> Response:
        record_id = request.path_params["record_id"]
        module = st.recycle_bin.pop(record_id, None)
        if module is None:
            return outcome([invalid_id(record_id)], 200)
        del st.records[module][record_id]
        return outcome([{"code": "SUCCESS", "details": {"id": record_id}, "message": "record deleted",
                         "status": "success"}], 200)

    @on_module
    async def list_records(request: Request, module: str) -> Response:
        names = wanted(request)
        if names is None:  # v8 made `fields` mandatory on list GETs
            return error(400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing",
                         {"param_name": "fields"})
        since = request.headers.get("if-modified-since")
        rows = st.live(module)
        if since:
            moment = datetime.fromisoformat(since)
            rows = [r for r in rows if r["_modified"].replace(microsecond=0) >= moment]
            if not rows:
                return Response(status_code=304)
        return search.paged(st, request, rows, names)

    @on_module
    async def search_records(request: Request, module: str) -> Response:
        hits = search.matching(st.indexed(module), request)
        if isinstance(hits, Response):
            return hits
        return search.paged(st, request, hits, wanted(request)) if hits else Response(status_code=204)

    async def notes_of(request: Request) -> Response:
        parent = request.path_params["record_id"]
        notes = [n for n in st.live("Notes") if (n.get("Parent_Id") or {}).get("id") == parent]
        return search.paged(st, request, notes, wanted(request)) if notes else Response(status_code=204)

    async def fields(request: Request) -> Response:
        module = request.query_params.get("module")
        if module is None:
            return error(400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing",
                         {"param_name": "module"})
        if module not in MODULES:
            return error(400, "INVALID_MODULE", "The module name given seems to be invalid", {"param_name": "module"})
        if request.method == "POST":
            made = created_field(module, await request.json(), st)
            if isinstance(made, Response):
                return made
            api_name, label, data_type, _unique = made
            st.missing_fields.discard((module, api_name))
            if all(f[0] != api_name for f in st.fields(module)):
                st.custom_fields.setdefault(module, []).append((api_name, label, data_type, False, False))
            return JSONResponse({"fields": [{"code": "SUCCESS", "details": {"id": f"57257670{next(st._ids):011d}"},
                                             "message": "field created", "status": "success"}]}, status_code=201)
        return JSONResponse({"fields": field_definitions(module, st.fields(module))})

    async def coql(request: Request) -> Response:
        body = await request.json()
        return search.coql(st, str(body.get("select_query") or "") if isinstance(body, dict) else "")

    async def users(request: Request) -> Response:
        return JSONResponse({"users": [OWNER | {"full_name": OWNER["name"], "status": "active"}],
                             "info": {"per_page": 200, "count": 1, "page": 1, "more_records": False}})

    api = [
        ("GET", f"{V8}/users", users),
        ("POST", f"{V8}/coql", coql),
        ("GET", f"{V8}/settings/fields", fields),
        ("POST", f"{V8}/settings/fields", fields),
        ("DELETE", f"{V8}/settings/recycle_bin/{{record_id}}", purge),
        ("GET", f"{V8}/{{module}}/search", search_records),
        ("POST", f"{V8}/{{module}}/upsert", upsert),
        ("GET", f"{V8}/{{module}}/{{record_id}}/Notes", notes_of),
        ("GET", f"{V8}/{{module}}", list_records),
        ("POST", f"{V8}/{{module}}", create),
        ("PUT", f"{V8}/{{module}}", update_many),
        ("GET", f"{V8}/{{module}}/{{record_id}}", read),
        ("PUT", f"{V8}/{{module}}/{{record_id}}", update_one),
        ("DELETE", f"{V8}/{{module}}/{{record_id}}", delete),
    ]
    routes = [*accounts_routes(st, wire), *control_routes(st),
              *(guarded(st, wire, m, p, h, token_of=token_of) for m, p, h in api)]
    app = Starlette(routes=routes)
    app.state.sandbox = st
    return app


def accounts_routes(st: ZohoState, wire: ZohoWire) -> list[Route]:
    """Zoho Accounts: `/oauth/v2/auth` (consents at once, naming the user's DC) and `/oauth/v2/token`."""

    async def authorize(request: Request) -> Response:
        st.calls["GET /oauth/v2/auth"] += 1
        code = st.tokens.issue_code()
        st.token_dc[code] = st.user_dc  # the code is redeemable at the user's own DC only
        params = {"code": code, "location": st.user_dc, "accounts-server": ACCOUNTS_OF[st.user_dc]}
        if "state" in request.query_params:
            params = {"state": request.query_params["state"]} | params
        return RedirectResponse(f"{request.query_params.get('redirect_uri', '/')}?{urlencode(params)}", 302)

    async def token(request: Request) -> Response:
        st.calls["POST /oauth/v2/token"] += 1
        if st.knobs.fail_next > 0:
            st.knobs.fail_next -= 1
            return wire.server_error(st.knobs.fail_status)
        # Zoho's own samples send the grant in the query string; form bodies work too.
        form = dict(request.query_params) | dict(parse_qsl((await request.body()).decode()))
        dc = st.dc_of(request.url.hostname)
        presented = form.get("code") or form.get("refresh_token") or ""
        if st.token_dc.get(presented, st.default_dc) != dc:
            return wire.token_error("invalid_grant")  # issued by another DC's accounts server
        if form.get("grant_type") == "refresh_token" and st.throttled(presented):
            return wire.token_throttled()
        st.tokens.rotate_refresh_tokens = False  # Zoho never rotates, whatever a test asks of the issuer
        issued = st.tokens.redeem(form)
        if isinstance(issued, str):
            return wire.token_error(issued)
        access, refresh = issued
        st.token_dc[access] = dc
        if refresh is not None:
            st.token_dc[refresh] = dc
        # A refresh never returns (nor rotates) the refresh token.
        return wire.dc_token_response(st, access, refresh if form.get("grant_type") == "authorization_code" else None,
                                      dc)

    return [Route("/oauth/v2/auth", authorize, methods=["GET"]), Route("/oauth/v2/token", token, methods=["POST"])]

