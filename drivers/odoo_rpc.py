"""Odoo's three external protocols behind one call, and its exceptions mapped to the driver taxonomy.

- JSON-RPC (`POST /jsonrpc`, `object.execute_kw(db, uid, key, model, method, args, kwargs)`), Odoo 8–19;
- XML-RPC (`POST /xmlrpc/2/object`, the same call as a methodCall; errors are Faults), Odoo 8–19;
- JSON-2 (`POST /json/2/{model}/{method}`, named arguments, `Authorization: bearer <key>`), Odoo 19+.

JSON-RPC and XML-RPC report application errors inside a success status (HTTP 200 with `error.data.name`, or a
Fault whose code is 1 application error, 2 UserError, 3 AccessDenied, 4 AccessError); JSON-2 uses real statuses
with the exception's class in `name`. All three map here, keeping only the exception's class name as the
provider code (Odoo's messages echo record values).
"""

from __future__ import annotations

import itertools
import xmlrpc.client
from collections.abc import Generator
from typing import Any, Literal
from xml.parsers.expat import ExpatError

import httpx
from pydantic import Field, SecretStr, model_validator

from drivers.base import BaseDriver
from drivers.errors import (
    AuthError,
    DriverError,
    InvalidRequestError,
    NotFoundError,
    UnavailableError,
)
from drivers.provider import CredentialForm

Protocol = Literal["auto", "jsonrpc", "xmlrpc", "json2"]

# Positional parameters of the ORM methods we call: JSON-RPC/XML-RPC pass them in order, JSON-2 by name.
POSITIONAL: dict[str, tuple[str, ...]] = {
    "search_read": ("domain",), "search_count": ("domain",), "read": ("ids",), "write": ("ids", "vals"),
    "create": ("vals_list",), "unlink": ("ids",), "load": ("fields", "data"), "fields_get": (),
    "check_access_rights": ("operation",),
}

# Exception class -> (taxonomy, the HTTP status JSON-2 answers for it, which we report for all protocols).
_EXCEPTIONS: dict[str, tuple[type[DriverError], int]] = {
    "AccessDenied": (AuthError, 401),  # wrong or revoked key: Odoo has no refresh, a human must reconnect
    "Unauthorized": (AuthError, 401),  # JSON-2's werkzeug.exceptions.Unauthorized
    "SessionExpiredException": (AuthError, 401),
    "AccessError": (AuthError, 403),  # the user lacks rights on the model: fixed in Odoo, not by retrying
    "MissingError": (NotFoundError, 404),
    "ValidationError": (InvalidRequestError, 400),
    "UserError": (InvalidRequestError, 400),
    "ValueError": (InvalidRequestError, 400),
    "AttributeError": (InvalidRequestError, 400),
    "TypeError": (InvalidRequestError, 400),
    "KeyError": (InvalidRequestError, 400),
    "OperationalError": (UnavailableError, 503),  # the database is down or unknown (psycopg2)
}
# XML-RPC fault codes (odoo/addons/base/controllers/rpc.py): code -> the exception class they stand for.
_FAULTS = {1: "ValueError", 2: "UserError", 3: "AccessDenied", 4: "AccessError"}


def exception_error(slug: str, name: str | None) -> DriverError:
    """The taxonomy error for an Odoo exception class (dotted or short); unknown classes are server errors."""
    short = (name or "").rsplit(".", 1)[-1] or "UnknownError"
    cls, status = _EXCEPTIONS.get(short, (UnavailableError, 500))
    return cls(f"Odoo raised {short}", provider=slug, status_code=status, provider_code=short)


def fault_error(slug: str, code: Any) -> DriverError:
    """The taxonomy error for an XML-RPC Fault code (1 is any application error: a bad request)."""
    name = _FAULTS.get(code if isinstance(code, int) else -1, "ServerError")
    error = exception_error(slug, name)
    error.provider_code = f"Fault{code}:{name}"
    error.args = (error._render(),)
    return error


class OdooLogin(httpx.Auth):
    """An Odoo login: database, user and API key (or password), and the uid `authenticate` gave for them.

    JSON-RPC and XML-RPC carry the key inside each call's arguments, so the driver reads it from here when it
    builds a call; JSON-2 requests get it as a bearer header from this flow.
    """

    def __init__(self, database: str, login: str, key: str) -> None:
        self.database, self.login, self.key = database, login, key
        self.uid: int | None = None
        self.protocol: str | None = None  # found by the first call's probe; one probe per connection

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if request.url.path.startswith("/json/2/") or "/json/2/" in request.url.path:
            request.headers["Authorization"] = f"bearer {self.key}"
            request.headers["X-Odoo-Database"] = self.database
        yield request


def jsonrpc_body(service: str, method: str, args: list[Any], call_id: int) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": "call", "params": {"service": service, "method": method, "args": args},
            "id": call_id}


def jsonrpc_result(slug: str, body: Any) -> Any:
    """`result` of a JSON-RPC answer, or the taxonomy error its `error` stands for."""
    if not isinstance(body, dict):
        raise UnavailableError("JSON-RPC answer without an object", provider=slug)
    error = body.get("error")
    if error is not None:
        data = error.get("data") if isinstance(error, dict) else None
        raise exception_error(slug, (data or {}).get("name") if isinstance(data, dict) else None)
    return body.get("result")


def xmlrpc_body(slug: str, method: str, args: list[Any]) -> bytes:
    """A methodCall; values XML-RPC cannot carry (None, unsupported types) are the caller's bad request."""
    try:
        return xmlrpc.client.dumps(tuple(args), method, allow_none=False).encode()
    except (TypeError, OverflowError) as exc:
        raise InvalidRequestError(f"a value cannot be sent over XML-RPC ({type(exc).__name__})", provider=slug,
                                  provider_code="xmlrpc_value") from None


def xmlrpc_result(slug: str, content: bytes) -> Any:
    """The value of an XML-RPC methodResponse, or the taxonomy error its Fault stands for.

    Parsed by the stdlib's expat parser, which does not fetch external entities and (expat ≥ 2.4.1) limits
    entity expansion; the SSRF transport caps the body size before it gets here.
    """
    try:
        values, _ = xmlrpc.client.loads(content, use_builtin_types=True)
    except xmlrpc.client.Fault as fault:
        raise fault_error(slug, fault.faultCode) from None
    except (xmlrpc.client.ResponseError, ExpatError, ValueError) as exc:
        raise UnavailableError(f"malformed XML-RPC answer ({type(exc).__name__})", provider=slug) from None
    return values[0] if values else None


class OdooCredentials(CredentialForm):
    """An Odoo login: instance URL, database, user and an API key (Preferences → Account Security) or password."""

    instance_url: str = Field(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$", max_length=2048)
    database: str = Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9_.-]+$")
    username: str = Field(min_length=1, max_length=256)
    api_key: SecretStr | None = Field(default=None, min_length=8, max_length=256)
    password: SecretStr | None = Field(default=None, min_length=1, max_length=256)
    protocol: Protocol = "auto"

    @model_validator(mode="after")
    def _one_secret(self) -> OdooCredentials:
        if (self.api_key is None) == (self.password is None):
            raise ValueError("give exactly one of api_key or password (an API key is recommended)")
        return self

    def secret(self) -> dict[str, Any]:
        key = self.api_key or self.password
        assert key is not None  # the validator guarantees one
        return {"auth": "odoo", "login": self.username, "api_key": key.get_secret_value()}

    def settings(self) -> dict[str, Any]:
        return {"instance_url": self.instance_url.rstrip("/"), "database": self.database,
                "odoo_protocol": self.protocol}


class OdooCalls(BaseDriver):
    """One ORM call over the instance's protocol, the login it needs, and JSON-2 error statuses (OdooDriver's base)."""

    def __init__(self, client: httpx.AsyncClient, config: dict[str, Any] | None = None) -> None:
        super().__init__(client, config)
        self._ids = itertools.count(1)

    def _provider_code(self, response: httpx.Response) -> str | None:
        body = response.json()  # JSON-2 error bodies: {"name": "odoo.exceptions.MissingError", ...}
        name = body.get("name") if isinstance(body, dict) else None
        return str(name).rsplit(".", 1)[-1] if name else None

    def _classify(self, response: httpx.Response, provider_code: str | None) -> type[DriverError] | None:
        return type(exception_error(self.slug, provider_code)) if provider_code else None

    # ----- calls -------------------------------------------------------------------------------

    async def call(self, model: str, method: str, positional: list[Any], named: dict[str, Any] | None = None) -> Any:
        """One ORM call over the instance's protocol (public for drivers.odoo_batch)."""
        return await self._call(model, method, positional, named)

    async def _call(self, model: str, method: str, positional: list[Any], named: dict[str, Any] | None = None) -> Any:
        login = self._login()
        protocol = await self._detect()
        if protocol == "json2":
            body = dict(zip(POSITIONAL[method], positional, strict=False)) | (named or {})
            return self._json("POST", await self._request("POST", f"/json/2/{model}/{method}", json=body))
        uid = login.uid if login.uid is not None else await self._authenticate(login, protocol)
        args = [login.database, uid, login.key, model, method, positional, named or {}]
        return await self._rpc(protocol, "object", "execute_kw", args)

    async def _rpc(self, protocol: str, service: str, method: str, args: list[Any]) -> Any:
        if protocol == "xmlrpc":
            response = await self._request("POST", f"/xmlrpc/2/{service}", content=xmlrpc_body(self.slug, method, args),
                                           headers={"Content-Type": "text/xml"})
            return xmlrpc_result(self.slug, response.content)
        body = jsonrpc_body(service, method, args, next(self._ids))
        return jsonrpc_result(self.slug, self._json("POST", await self._request("POST", "/jsonrpc", json=body)))

    async def _authenticate(self, login: OdooLogin, protocol: str) -> int:
        uid = await self._rpc(protocol, "common", "authenticate", [login.database, login.login, login.key, {}])
        if not isinstance(uid, int) or isinstance(uid, bool):  # Odoo answers `false` for a wrong login or key
            raise AuthError("Odoo refused the login", provider=self.slug, status_code=401, provider_code="AccessDenied")
        login.uid = uid
        return uid

    async def _detect(self) -> str:
        """The protocol: the tenant's setting, else JSON-2 from Odoo 19 on (by `common.version`), else JSON-RPC."""
        login = self._login()
        chosen = login.protocol or str(self.config.get("odoo_protocol") or "auto")
        if chosen == "auto":
            try:
                version = await self._rpc("jsonrpc", "common", "version", [])
                major = int((version or {}).get("server_version_info", [0])[0])
            except NotFoundError:  # /jsonrpc is gone (Odoo 20+ removed RPC)
                major = 99
            chosen = "json2" if major >= 19 else "jsonrpc"
        login.protocol = chosen
        return chosen

    def _login(self) -> OdooLogin:
        auth = self.client.auth
        if not isinstance(auth, OdooLogin):
            raise AuthError("the client has no Odoo login", provider=self.slug)
        return auth
