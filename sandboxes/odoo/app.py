"""Odoo sandbox: JSON-RPC (`POST /jsonrpc`, Odoo 16–18, still served by 19) and JSON-2 (`/json/2/{model}/{method}`,
Odoo 19+), over the state in `sandboxes.odoo.state`.

Wire facts, from the recorded sessions of a real Odoo 17 server and the JSON-2 documentation
(../shared/reference/providers-mindbody-tekmetric-odoo-toast-webhooks.md §3):
- JSON-RPC answers HTTP 200 for application errors, with `error.code` 200, `error.message` "Odoo Server Error" and
  the exception class in `error.data.name`; `common.authenticate` answers `false` for bad credentials; every
  `object.execute_kw(db, uid, key, model, method, args, kwargs)` re-checks the key (AccessDenied).
- JSON-2 takes `Authorization: bearer <key>` (+ `X-Odoo-Database`), named arguments in the body, and answers errors
  with a real status and `{"name", "message", "arguments", "context", "debug"}`; it is 404 before Odoo 19.
- Odoo has no rate limiter of its own; hosted instances sit behind a proxy that answers 429 with Retry-After,
  which `limit_next` plays. `fail_next` plays the proxy's 5xx.
"""

from __future__ import annotations

import xmlrpc.client
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sandboxes.common import FaultAnswers, bearer, control_routes, with_faults
from sandboxes.odoo.schema import FIELDS
from sandboxes.odoo.state import ApiKeys, OdooError, OdooState

# Positional parameters of the ORM methods, in order: JSON-RPC passes them in `args`, JSON-2 by name.
POSITIONAL: dict[str, tuple[str, ...]] = {
    "search_read": ("domain", "fields", "offset", "limit", "order"), "search": ("domain", "offset", "limit", "order"),
    "search_count": ("domain",), "read": ("ids", "fields"), "write": ("ids", "vals"), "create": ("vals_list",),
    "unlink": ("ids",), "load": ("fields", "data"), "fields_get": ("allfields", "attributes"),
    "check_access_rights": ("operation",), "name_search": ("name",),
}
XMLRPC_FAULTS = {"odoo.exceptions.UserError": 2, "odoo.exceptions.ValidationError": 2,
                 "odoo.exceptions.AccessDenied": 3, "odoo.exceptions.AccessError": 4}
JSON2_STATUS = {"odoo.exceptions.AccessDenied": 401, "odoo.exceptions.AccessError": 403,
                "odoo.exceptions.MissingError": 404, "odoo.exceptions.ValidationError": 422,
                "odoo.exceptions.UserError": 422, "builtins.ValueError": 422}


def execute(state: OdooState, model: str, method: str, named: dict[str, Any]) -> Any:
    """One ORM call with named arguments (after JSON-RPC's positional ones were named)."""
    if model not in FIELDS:
        raise OdooError("odoo.exceptions.UserError", f"Object {model} doesn't exist")
    if model in state.denied_models:
        label = {"res.partner": "Contact", "crm.lead": "Lead/Opportunity"}.get(model, model)
        raise OdooError("odoo.exceptions.AccessError", f"You are not allowed to access '{label}' ({model}) records.\n\n"
                        "Contact your administrator to request access if necessary.")
    context = named.get("context") or {}
    ids = list(named.get("ids") or [])
    if method == "check_access_rights":
        return True
    if method == "create":
        vals = named.get("vals_list")
        return [state.create(model, v) for v in vals] if isinstance(vals, list) else state.create(model, vals or {})
    if method == "read":
        table = state.tables[model]
        return [state.shown(model, table[i], named.get("fields")) for i in ids if i in table]
    if method == "write":
        return state.write(model, ids, named.get("vals") or {})
    if method == "unlink":
        return state.unlink(model, ids)
    if method in ("search_read", "search", "search_count", "name_search"):
        domain = [["name", "ilike", named.get("name", "")]] if method == "name_search" else named.get("domain") or []
        rows = state.search(model, domain, offset=int(named.get("offset") or 0),
                            limit=None if method == "search_count" else named.get("limit"), order=named.get("order"),
                            context=context)
        if method == "search_count":
            return len(rows)
        if method == "search":
            return [r["id"] for r in rows]
        if method == "name_search":
            return [[r["id"], r.get("name") or ""] for r in rows]
        return [state.shown(model, r, named.get("fields")) for r in rows]
    if method == "fields_get":
        wanted = named.get("allfields") or list(FIELDS[model])
        attributes = named.get("attributes")
        return {n: {k: v for k, v in FIELDS[model][n].items() if not attributes or k in attributes}
                for n in wanted if n in FIELDS[model]}
    if method == "load":
        return state.load(model, list(named.get("fields") or []), list(named.get("data") or []))
    raise OdooError("builtins.AttributeError", f"The method '{method}' does not exist on the model '{model}'")


def rpc_error(request_id: Any, exc: OdooError) -> JSONResponse:
    data = {"name": exc.name, "debug": "Traceback (most recent call last): ...", "message": exc.message,
            "arguments": [exc.message], "context": {}}
    return JSONResponse({"jsonrpc": "2.0", "id": request_id,
                         "error": {"code": 200, "message": "Odoo Server Error", "data": data}})


def create_app(state: OdooState | None = None) -> Starlette:
    state = state or OdooState(tokens=ApiKeys("odoo", None))

    # Odoo has no limiter of its own: these are the hosting proxy's answers.
    answers = FaultAnswers(
        server_error=lambda status: PlainTextResponse("Service Unavailable", status_code=status),
        rate_limited=lambda: PlainTextResponse("Too Many Requests", status_code=429,
                                               headers={"Retry-After": state.knobs.retry_after or "60"}))

    async def faults(name: str, run: Callable[[], Response]) -> Response:
        async def call() -> Response:
            return run()

        return await with_faults(state, name, answers, call)

    async def jsonrpc(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return PlainTextResponse("Bad Request", status_code=400)
        if not isinstance(body, dict):
            return PlainTextResponse("Bad Request", status_code=400)
        params, request_id = body.get("params") or {}, body.get("id")
        service, method = str(params.get("service")), str(params.get("method"))
        args = list(params.get("args") or [])
        name = f"{service}.{method}"
        if service == "object" and method == "execute_kw" and len(args) >= 5:
            name = f"{args[3]}.{args[4]}"

        def run() -> Response:
            try:
                return JSONResponse({"jsonrpc": "2.0", "id": request_id, "result": _service(service, method, args)})
            except OdooError as exc:
                return rpc_error(request_id, exc)

        return await faults(f"POST /jsonrpc {name}", run)

    def _service(service: str, method: str, args: list[Any]) -> Any:
        if service == "common" and method == "version":
            serie = f"{state.version}.0"
            return {"server_version": serie, "server_version_info": [state.version, 0, 0, "final", 0, ""],
                    "server_serie": serie, "protocol_version": 1}
        if service == "common" and method in ("authenticate", "login"):
            return state.authenticate(*args[:3])
        if service == "object" and method == "execute_kw":
            db, uid, key, model, orm_method, *rest = args
            state.check_db(db)
            state.check_key(uid, key)
            positional = rest[0] if rest else []
            named = dict(zip(POSITIONAL.get(orm_method, ()), positional, strict=False))
            named |= rest[1] if len(rest) > 1 else {}
            return execute(state, model, orm_method, named)
        raise OdooError("builtins.Exception", f"Method not found: {method}")

    async def xml_rpc(request: Request) -> Response:
        # /xmlrpc/2/{common,object}: the same services; application errors are Faults (rpc.py's codes).
        service = request.path_params["service"]
        try:
            args, called = xmlrpc.client.loads(await request.body(), use_builtin_types=True)
        except Exception:  # noqa: BLE001 - any parse failure is the client's malformed request
            return PlainTextResponse("Bad Request", status_code=400)
        method = str(called)
        name = f"{args[3]!s}.{args[4]!s}" if service == "object" and method == "execute_kw" and len(args) >= 5 else (
            f"{service}.{method}")

        def run() -> Response:
            try:
                body = xmlrpc.client.dumps((_service(service, method, list(args)),), methodresponse=True,
                                          allow_none=False)
            except OdooError as exc:
                code = XMLRPC_FAULTS.get(exc.name, 1)
                last = f"{exc.name.rsplit('.', 1)[-1]}: {exc.message}"
                text = exc.message if code in (2, 3, 4) else f"Traceback (most recent call last): ...\n{last}"
                body = xmlrpc.client.dumps(xmlrpc.client.Fault(code, text), methodresponse=True)
            return Response(body, media_type="text/xml")

        return await faults(f"POST /xmlrpc {name}", run)

    async def json2(request: Request) -> Response:
        model, method = request.path_params["model"], request.path_params["method"]
        if state.version < 19:
            return PlainTextResponse("Not Found", status_code=404)
        named = await request.json()

        def run() -> Response:
            key = bearer(request)
            if key is None or state.tokens.check(key) != "ok":
                return JSONResponse({"name": "werkzeug.exceptions.Unauthorized", "message": "Invalid apikey",
                                     "arguments": ["Invalid apikey", 401], "context": {}, "debug": "..."}, 401)
            try:
                state.check_db(request.headers.get("x-odoo-database", state.database))
                return JSONResponse(execute(state, model, method, named))
            except OdooError as exc:
                return JSONResponse({"name": exc.name, "message": exc.message, "arguments": [exc.message],
                                     "context": {}, "debug": "..."}, JSON2_STATUS.get(exc.name, 500))

        return await faults(f"POST /json/2 {model}.{method}", run)

    async def web_version(request: Request) -> Response:
        return JSONResponse({"version_info": [state.version, 0, 0, "final", 0, ""], "version": f"{state.version}.0"})

    app = Starlette(routes=[
        Route("/jsonrpc", jsonrpc, methods=["POST"]),
        Route("/xmlrpc/2/{service}", xml_rpc, methods=["POST"]),
        Route("/json/2/{model}/{method}", json2, methods=["POST"]),
        Route("/web/version", web_version, methods=["GET"]),
        *control_routes(state),
    ])
    app.state.sandbox = state
    return app
