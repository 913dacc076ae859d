"""Operator routes to connect a tenant's CRM (operator JWT; an operator pinned to one tenant sees only it).

- `POST /api/operator/tenants/{id}/connect/oauth/start` `{"sandbox": bool?}` → `{"authorize_url": …}`
- `GET  /api/connect/oauth/callback?code=&state=` — the provider redirects the browser here; the single-use
  state authenticates it (a browser redirect carries no bearer token)
- `POST /api/operator/tenants/{id}/connect/credentials` — form-based providers (JSON body)
- `POST /api/operator/tenants/{id}/connect/test` — run test_connection again
- `GET  /api/operator/tenants/{id}/connection` — status, reason and credential metadata (never a secret)
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Union

from pydantic import BaseModel, ConfigDict, RootModel
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.auth import Principal, require_operator
from api.console.landing import console_flow, land
from api.context import context_of
from api.errors import Problem, read_json
from api.openapi import document
from drivers.registry import credential_forms
from store import outbox
from store.models import Tenant, TenantCredential
from vault.connect import CALLBACK_PATH, ConnectError, Connector, ConnectOutcome
from vault.connections import Actor
from vault.crypto import CredentialKeyError
from vault.provider import VaultDriverProvider

CONNECTOR_KEY = "connector"
log = logging.getLogger(__name__)


def connector(request: Request) -> Connector:
    """The process's Connector over the vault-backed driver provider (built once, kept in the context)."""
    ctx = context_of(request)
    found: Connector | None = ctx.extras.get(CONNECTOR_KEY)
    if found is not None:
        return found
    drivers = ctx.extras.get("drivers")
    if not isinstance(drivers, VaultDriverProvider):  # tests may hand tool routes a non-vault provider
        try:
            drivers = VaultDriverProvider.from_settings(ctx.settings, ctx.sessions)
        except CredentialKeyError:
            raise Problem(503, "crm-not-configured", "This deployment cannot store CRM credentials.",
                          "The credential encryption key is missing or malformed.") from None
        ctx.extras.setdefault("drivers", drivers)
    built = ctx.extras[CONNECTOR_KEY] = Connector(drivers, ctx.sessions, oauth_clients=ctx.settings.oauth_clients,
                                                  public_base_url=ctx.settings.public_base_url)
    return built


def _operator(request: Request) -> tuple[uuid.UUID, Actor]:
    tenant_id: uuid.UUID = request.path_params["tenant_id"]
    principal: Principal = require_operator(request, tenant_id)
    rid = request.headers.get("x-request-id")
    return tenant_id, Actor(type="platform_operator", id=principal.subject, purpose="connect CRM",
                            request_id=rid[:100] if rid else None)


async def wake_mirror_if_active(request: Request, outcome: ConnectOutcome) -> None:
    """A connection that passed its test unparks the tenant's mirror (parked on auth_error) now, not at its next
    slow look. Through the outbox, so the wake-up is durable: the relay of any API process delivers it, retried
    while Temporal is away (a restart) — an in-memory wake died with the process that held it."""
    if outcome.status != "active":
        return
    ctx = context_of(request)
    async with ctx.sessions() as session, session.begin():
        await outbox.add(session, [outbox.intent_values(outcome.tenant_id, "tenants", outcome.tenant_id,
                                                        "reconnected")])
    relay = ctx.extras.get("relay")
    if relay is not None:
        relay.nudge()


def _outcome(outcome: ConnectOutcome) -> JSONResponse:
    body = {"tenant_id": str(outcome.tenant_id), "provider": outcome.provider, "status": outcome.status,
            "reason": outcome.reason}
    if outcome.generated_secret:  # shown this once; only its ciphertext is kept
        body["generated_secret"] = outcome.generated_secret
    return JSONResponse(body)


def _problem(exc: ConnectError) -> Problem:
    return Problem(exc.status, exc.slug, exc.title, exc.detail)


class OAuthStart(BaseModel):
    """Optional body of the OAuth start: `sandbox` picks the provider's login host for sandbox accounts, where it
    has one (the driver's `oauth_start_settings`)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    sandbox: bool | None = None


class AuthorizeUrl(BaseModel):
    authorize_url: str


class ConnectResult(BaseModel):
    """`status` is `active` after a passing test_connection, else `pending` with the provider's `reason`."""

    tenant_id: uuid.UUID
    provider: str
    status: str
    reason: str | None
    generated_secret: str | None = None  # a secret the form generated (webhook signing), shown only this once


@document(request=OAuthStart, responses={200: AuthorizeUrl}, auth="operator",
          errors={404: "No such tenant", 409: "Tenant disabled", 503: "No OAuth app configured"})
async def oauth_start(request: Request) -> JSONResponse:
    """Start an OAuth connect: the authorize URL (with a single-use state, and PKCE where supported)."""
    tenant_id, actor = _operator(request)
    length = request.headers.get("content-length")
    empty = length == "0" or (length is None and "transfer-encoding" not in request.headers)
    body = OAuthStart.model_validate({} if empty else await read_json(request, 16_384))
    try:
        url = await connector(request).start_oauth(tenant_id, actor, sandbox=body.sandbox)
    except ConnectError as exc:
        raise _problem(exc) from None
    return JSONResponse({"authorize_url": url})


@document(responses={200: ConnectResult},
          errors={400: "Bad, expired or replayed state; refused code", 502: "Token endpoint unavailable"})
async def oauth_callback(request: Request) -> Response:
    """The provider's redirect back: exchange the code, store tokens encrypted, test, activate.

    When the operator console started the flow (its cookie is on the browser), the answer is a 303 back to the
    tenant's connect page in the console, which shows the outcome."""
    params = request.query_params
    extra = {k: v[:512] for k, v in params.items() if k not in ("state", "code", "error")}
    from_console = console_flow(request)  # the console started it: land back on its connect page
    try:
        outcome = await connector(request).finish_oauth(state=params.get("state"), code=params.get("code"),
                                                        error=params.get("error"), extra=extra)
    except ConnectError as exc:
        if from_console is not None:
            return land(from_console, f"error:{exc.title} {exc.detail or ''}".strip())
        raise _problem(exc) from None
    await wake_mirror_if_active(request, outcome)
    if from_console is not None:
        return land(outcome.tenant_id, f"{outcome.status}:{outcome.reason or ''}")
    return _outcome(outcome)


# The body is the tenant's provider's form; documented as any one of the forms the drivers declare.
_forms: Any = tuple(credential_forms().values())
CredentialsBody = RootModel[Union[_forms]]  # noqa: UP007 — Union over a runtime tuple of forms


@document(request=CredentialsBody, responses={200: ConnectResult}, auth="operator",
          errors={404: "No such tenant", 409: "Tenant disabled"})
async def connect_credentials(request: Request) -> JSONResponse:
    """Connect a form-based provider: credentials validated per provider, stored encrypted, then tested."""
    tenant_id, actor = _operator(request)
    body = await read_json(request, 16_384)
    try:
        outcome = await connector(request).connect_form(tenant_id, body, actor)
    except ConnectError as exc:
        raise _problem(exc) from None
    await wake_mirror_if_active(request, outcome)
    return _outcome(outcome)


@document(responses={200: ConnectResult}, auth="operator", errors={404: "No such tenant", 409: "Not connected"})
async def connect_test(request: Request) -> JSONResponse:
    """Run test_connection again and set the tenant active or pending."""
    tenant_id, actor = _operator(request)
    try:
        outcome = await connector(request).retest(tenant_id, actor)
    except ConnectError as exc:
        raise _problem(exc) from None
    await wake_mirror_if_active(request, outcome)
    return _outcome(outcome)


@document(auth="operator", errors={404: "No such tenant"})
async def connection(request: Request) -> JSONResponse:
    """The tenant's connection: status, reason, and credential metadata (scheme, version, expiry; no secret)."""
    tenant_id, _ = _operator(request)
    async with context_of(request).sessions() as session:
        tenant = await session.get(Tenant, tenant_id)
        if tenant is None:
            raise Problem(404, "not-found", "No such tenant.")
        query = select(TenantCredential).where(TenantCredential.tenant_id == tenant_id,
                                               TenantCredential.provider == tenant.provider)
        row = (await session.execute(query)).scalars().first()
    credential = None if row is None else {
        "scheme": row.scheme, "version": row.version, "needs_reconnect": row.needs_reconnect,
        "expires_at": row.expires_at.isoformat() if row.expires_at else None,
        "rotated_at": row.rotated_at.isoformat() if row.rotated_at else None,
    }
    return JSONResponse({"tenant_id": str(tenant_id), "provider": tenant.provider, "status": tenant.status,
                         "reason": tenant.status_reason, "credential": credential})


PREFIX = "/api/operator/tenants/{tenant_id:uuid}"
routes = [
    Route(f"{PREFIX}/connect/oauth/start", oauth_start, methods=["POST"]),
    Route(CALLBACK_PATH, oauth_callback, methods=["GET"]),
    Route(f"{PREFIX}/connect/credentials", connect_credentials, methods=["POST"]),
    Route(f"{PREFIX}/connect/test", connect_test, methods=["POST"]),
    Route(f"{PREFIX}/connection", connection, methods=["GET"]),
]
