"""A configurable REST API for the generic REST driver: two differently shaped APIs over one store.

- `flat` (`/flat/v1/{objects}`): flat JSON records with numeric ids, root-level arrays, `{"error": code}` bodies,
  429 with `X-RateLimit-Reset` (seconds, no Retry-After), filters as plain query parameters.
- `jsonapi` (`/jsonapi/{objects}`): JSON:API documents (`data`, `attributes`, `meta`, `links`), string ids,
  `{"errors": [{"status", "code"}]}` bodies, 429 with Retry-After, `filter[...]`/`page[...]` parameters.

Both serve every pagination style at once (offset/limit, page/per_page, a `next_cursor`, and `Link: rel="next"`)
and take the auth type set for the shape in `state.auth` (none, API key in a header or the query, bearer, basic,
OAuth2 client credentials at `/{shape}/oauth/token`, Basic or body client auth, `expires_in` sent as a string),
plus an OpenAPI document at `/{shape}/openapi.json` for schema introspection.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandboxes.common import FaultAnswers, SandboxState, TokenIssuer, bearer, control_routes, with_faults

OBJECTS: dict[str, tuple[str, ...]] = {
    "customers": ("first_name", "last_name", "email", "phone", "company", "city"),
    "leads": ("first_name", "last_name", "email", "phone", "status", "message"),
    "deals": ("name", "amount", "stage", "description"),
    "cases": ("subject", "description", "status", "priority"),
    "notes": ("body", "customer_id"),
}
KEY_FIELDS = ("crm_key", "crm_fingerprint")  # the fields the tenant added for idempotent creates
PREFIX = {"flat": "/flat/v1", "jsonapi": "/jsonapi"}


class RestCredentials(TokenIssuer):
    """Static credentials and client-credentials tokens; `revoke_refresh` revokes the key/client altogether."""

    def __init__(self) -> None:
        super().__init__("rest", 3600)
        self.api_key, self.static_token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        self.username, self.password = "crm-sor", secrets.token_urlsafe(12)
        self.revoked = False

    def revoke_refresh(self) -> None:
        super().revoke_refresh()
        self.revoked = True


@dataclass
class RestState(SandboxState):
    auth: dict[str, str] = field(default_factory=lambda: {"flat": "api_key_header", "jsonapi": "oauth2"})
    rows: dict[str, dict[str, dict[str, dict[str, Any]]]] = field(
        default_factory=lambda: {shape: {o: {} for o in OBJECTS} for shape in PREFIX})
    next_id: int = 501

    @property
    def creds(self) -> RestCredentials:
        assert isinstance(self.tokens, RestCredentials)
        return self.tokens

    def add(self, shape: str, objects: str, fields: dict[str, Any]) -> str:
        record_id = str(self.next_id)
        self.next_id += 1
        self.rows[shape][objects][record_id] = {**fields, "id": record_id, "updated_at": self.now().isoformat(),
                                                "archived": False}
        return record_id

    def live(self, shape: str, objects: str) -> list[dict[str, Any]]:
        return [r for r in self.rows[shape][objects].values() if not r["archived"]]


class Problem(Exception):
    def __init__(self, status: int, code: str) -> None:
        super().__init__(code)
        self.status, self.code = status, code


def _problem(shape: str, status: int, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": code, "message": code.replace("_", " ")} if shape == "flat" else {
        "errors": [{"status": str(status), "code": code, "title": code.replace("_", " ")}]}
    return JSONResponse(body, status_code=status, headers=headers)


def _out(shape: str, objects: str, row: dict[str, Any]) -> dict[str, Any]:
    fields = {k: v for k, v in row.items() if k not in ("id", "archived")}
    if shape == "flat":
        return {"id": int(row["id"]), **fields}
    return {"id": row["id"], "type": objects, "attributes": fields}


def _authorized(state: RestState, shape: str, request: Request) -> bool:
    creds, mode = state.creds, state.auth[shape]
    if mode == "none":
        return True
    if creds.revoked:
        return False
    if mode == "api_key_header":
        return request.headers.get("x-api-key") == creds.api_key
    if mode == "api_key_query":
        return request.query_params.get("api_key") == creds.api_key
    if mode == "bearer":
        return bearer(request) == creds.static_token
    if mode == "basic":
        expected = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
        return request.headers.get("authorization") == f"Basic {expected}"
    return creds.check(bearer(request)) == "ok"


def _param(shape: str, query: dict[str, str], name: str) -> str | None:
    return query.get(name if shape == "flat" else f"filter[{name}]")


def _listing(state: RestState, shape: str, objects: str, request: Request) -> Response:
    query = dict(request.query_params)
    rows = state.live(shape, objects)
    since, text = _param(shape, query, "updated_since"), _param(shape, query, "q")
    if since:
        rows = [r for r in rows if datetime.fromisoformat(r["updated_at"]) >= datetime.fromisoformat(since)]
    if text:
        rows = [r for r in rows if any(text.lower() in str(v).lower() for k, v in r.items() if k in OBJECTS[objects])]
    for name, field_name in (("email", "email"), ("key", "crm_key"), ("crm_key", "crm_key")):
        wanted = _param(shape, query, name)
        if wanted is not None:
            rows = [r for r in rows if str(r.get(field_name, "")).lower() == wanted.lower()]
    digits = _param(shape, query, "phone_digits") or _param(shape, query, "phone")
    if digits:
        needle = "".join(c for c in digits if c.isdigit())[-10:]
        rows = [r for r in rows if needle and needle in "".join(c for c in str(r.get("phone", "")) if c.isdigit())]
    rows.sort(key=lambda r: (r["updated_at"], int(r["id"])))
    size_name = "limit" if shape == "flat" else "page[size]"
    size = state.page_size(int(query.get(size_name) or query.get("per_page") or 25), 100)
    page = query.get("page") if shape == "flat" else query.get("page[number]")
    cursor = query.get("cursor") if shape == "flat" else query.get("page[cursor]")
    start = int(query.get("offset") or 0) if shape == "flat" else 0
    start = (int(page) - 1) * size if page else int(cursor) if cursor else start
    chunk, more = rows[start:start + size], start + size < len(rows)
    headers = {}
    next_cursor = str(start + size) if more else None
    if more:
        following = {k: v for k, v in parse_qsl(request.url.query) if k not in ("offset", "page", "page[number]")}
        following["cursor" if shape == "flat" else "page[cursor]"] = str(start + size)
        headers["Link"] = f'<{request.url.path}?{urlencode(following)}>; rel="next"'
    items = [_out(shape, objects, r) for r in chunk]
    if shape == "flat":
        headers["X-Next-Cursor"] = next_cursor or ""
        return JSONResponse(items, headers=headers)
    return JSONResponse({"data": items, "meta": {"next_cursor": next_cursor}}, headers=headers)


def _fields(shape: str, objects: str, body: Any) -> dict[str, Any]:
    fields = body if shape == "flat" else (body or {}).get("data", {}).get("attributes")
    if not isinstance(fields, dict):
        raise Problem(400, "invalid_body")
    if any(k not in OBJECTS[objects] and k not in KEY_FIELDS for k in fields):
        raise Problem(400, "unknown_field")
    return fields


def create_app(state: RestState | None = None) -> Starlette:
    state = state or RestState(tokens=RestCredentials())

    def endpoint(shape: str, with_id: bool) -> Any:
        async def handle(request: Request) -> Response:
            objects = request.path_params["objects"]
            name = f"{request.method} {PREFIX[shape]}/{{objects}}" + ("/{id}" if with_id else "")
            header = "X-RateLimit-Reset" if shape == "flat" else "Retry-After"
            answers = FaultAnswers(
                server_error=lambda status: _problem(shape, status, "unavailable"),
                rate_limited=lambda: _problem(shape, 429, "rate_limited", {header: state.knobs.retry_after or "20"}))

            def refuse() -> Response | None:
                return None if _authorized(state, shape, request) else _problem(shape, 401, "unauthorized")

            async def run() -> Response:
                try:
                    return await _dispatch(state, shape, objects, request, with_id)
                except Problem as problem:
                    return _problem(shape, problem.status, problem.code)

            return await with_faults(state, name, answers, run, refuse=refuse)
        return handle

    async def token(request: Request) -> Response:
        state.calls[f"POST {request.url.path}"] += 1
        form = dict(parse_qsl((await request.body()).decode()))
        client = (form.get("client_id"), form.get("client_secret"))
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
            client = (client_id, secret)
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        if client != (state.creds.client_id, state.creds.client_secret) or state.creds.revoked:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        return JSONResponse({"access_token": state.creds.issue_access(), "token_type": "Bearer",
                             "expires_in": str(state.creds.ttl_seconds)})

    async def openapi(request: Request) -> Response:
        schemas = {objects[:-1].title(): {"type": "object", "required": list(fields[:1]), "properties": {
            "id": {"type": "string", "readOnly": True}, "updated_at": {"type": "string", "format": "date-time",
                                                                      "readOnly": True},
            **{f: {"type": "string"} for f in (*fields, *KEY_FIELDS)}}} for objects, fields in OBJECTS.items()}
        return JSONResponse({"openapi": "3.0.3", "info": {"title": "sandbox CRM", "version": "1"}, "paths": {},
                             "components": {"schemas": schemas}})

    routes = [Route(f"{PREFIX[s]}/oauth/token", token, methods=["POST"]) for s in PREFIX]
    routes += [Route(f"{PREFIX[s]}/openapi.json", openapi, methods=["GET"]) for s in PREFIX]
    for shape, prefix in PREFIX.items():
        routes += [Route(prefix + "/{objects}", endpoint(shape, False), methods=["GET", "POST"]),
                   Route(prefix + "/{objects}/{id}", endpoint(shape, True), methods=["GET", "PATCH", "DELETE"])]
    app = Starlette(routes=[*routes, *control_routes(state)])
    app.state.sandbox = state
    return app


async def _dispatch(state: RestState, shape: str, objects: str, request: Request, with_id: bool) -> Response:
    if objects not in OBJECTS:
        raise Problem(404, "unknown_resource")
    if not with_id:
        if request.method == "GET":
            return _listing(state, shape, objects, request)
        try:
            body = await request.json()
        except ValueError:
            raise Problem(400, "invalid_json") from None
        record_id = state.add(shape, objects, _fields(shape, objects, body))
        out = _out(shape, objects, state.rows[shape][objects][record_id])
        return JSONResponse(out if shape == "flat" else {"data": out}, status_code=201)
    row = state.rows[shape][objects].get(request.path_params["id"])
    if row is None or row["archived"]:
        raise Problem(404, "not_found")
    if request.method == "DELETE":
        row["archived"] = True  # both APIs archive on DELETE
        return Response(status_code=204)
    if request.method == "PATCH":
        try:
            body = await request.json()
        except ValueError:
            raise Problem(400, "invalid_json") from None
        row.update(_fields(shape, objects, body))
        row["updated_at"] = state.now().isoformat()
    out = _out(shape, objects, row)
    return JSONResponse(out if shape == "flat" else {"data": out})
