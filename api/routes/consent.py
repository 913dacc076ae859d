"""Consent and do-not-call (operator JWT, pinned to the tenant), and the agent service's pull of placed calls.

A person is stored only as `person_hash` (keyed HMAC of the E.164 phone, store/outbound.py). Consent carries
its source and time; revoking it stamps `revoked_at` and signals every pending call of that person to re-check
at once, so a revocation ends a deferred call without waiting for its timer (the check itself would also end
it when the timer fires).

- `POST /consents` {phone, purpose, channel, source, granted_at?} grants (or re-grants);
- `POST /consents/revoke` {phone, purpose?, channel?, source} revokes (all purposes/channels when omitted);
- `POST /do-not-call` {phone, source} adds to the tenant's internal list;
- `GET /api/agent/call-requests` (agent JWT) lists placed calls not handed to a dialer; `POST
  /api/agent/call-requests/{id}/claim` takes one, exactly once (409 after).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.auth import require_agent, require_operator
from api.context import AppContext, context_of
from api.errors import Problem, read_json
from api.outbound_schemas import ConsentBody, DoNotCallBody, RevokeBody, e164_of
from drivers.text import region_of
from store import outbound
from store.models import Tenant
from store.outbound_models import CallRequest, DoNotCall, OutboundConsent
from workflows.outbound_types import outbound_call_workflow_id

log = logging.getLogger(__name__)
PREFIX = "/api/operator/tenants/{tenant_id:uuid}"


def _authorized(request: Request) -> uuid.UUID:
    """The tenant, once the operator may act for it: checked before the body is read (no 422 oracle)."""
    tenant_id: uuid.UUID = request.path_params["tenant_id"]
    require_operator(request, tenant_id)
    return tenant_id


async def _person(request: Request, phone: str) -> tuple[uuid.UUID, str]:
    tenant_id = _authorized(request)
    ctx = context_of(request)
    async with ctx.sessions() as session:
        tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise Problem(404, "not-found", "No such tenant.")
    region = region_of(tenant.settings)
    return tenant_id, outbound.person_hash(ctx.settings.subject_hash_key.get_secret_value(), tenant_id,
                                           e164_of(phone, region))


async def grant(request: Request) -> Response:
    _authorized(request)
    body = ConsentBody.model_validate(await read_json(request))
    tenant_id, person = await _person(request, body.phone)
    granted = (body.granted_at or datetime.now(UTC)).astimezone(UTC)
    async with context_of(request).sessions() as session, session.begin():
        row = await outbound.consent(session, tenant_id, person, body.purpose, body.channel)
        if row is None:
            session.add(OutboundConsent(id=uuid.uuid4(), tenant_id=tenant_id, person_hash=person,
                                        purpose=body.purpose, channel=body.channel, source=body.source,
                                        granted_at=granted))
        else:  # a new consent after a revocation: the newest statement of the person counts
            row.source, row.granted_at, row.revoked_at, row.revoked_source = body.source, granted, None, None
    return JSONResponse({"purpose": body.purpose, "channel": body.channel, "granted_at": granted.isoformat()},
                        status_code=201)


async def revoke(request: Request) -> Response:
    _authorized(request)
    body = RevokeBody.model_validate(await read_json(request))
    tenant_id, person = await _person(request, body.phone)
    now = datetime.now(UTC)
    statement = update(OutboundConsent).where(OutboundConsent.tenant_id == tenant_id,
                                              OutboundConsent.person_hash == person,
                                              OutboundConsent.revoked_at.is_(None))
    if body.purpose is not None:
        statement = statement.where(OutboundConsent.purpose == body.purpose)
    if body.channel is not None:
        statement = statement.where(OutboundConsent.channel == body.channel)
    ctx = context_of(request)
    async with ctx.sessions() as session, session.begin():
        result = await session.execute(statement.values(revoked_at=now, revoked_source=body.source))
    woken = await _recheck_pending(ctx, tenant_id, person)
    return JSONResponse({"revoked": int(getattr(result, "rowcount", 0) or 0), "pending_calls_rechecked": woken})


async def do_not_call(request: Request) -> Response:
    _authorized(request)
    body = DoNotCallBody.model_validate(await read_json(request))
    tenant_id, person = await _person(request, body.phone)
    ctx = context_of(request)
    async with ctx.sessions() as session, session.begin():
        if not await outbound.on_do_not_call(session, tenant_id, person):
            session.add(DoNotCall(id=uuid.uuid4(), tenant_id=tenant_id, person_hash=person, source=body.source))
    woken = await _recheck_pending(ctx, tenant_id, person)
    return JSONResponse({"listed": True, "pending_calls_rechecked": woken}, status_code=201)


async def _recheck_pending(ctx: AppContext, tenant_id: uuid.UUID, person: str) -> int:
    """Signal the person's deferred calls to re-check now (best effort: the timer re-checks anyway)."""
    async with ctx.sessions() as session:
        pending = (await session.execute(select(CallRequest.event_row_id).where(
            CallRequest.tenant_id == tenant_id, CallRequest.person_hash == person,
            CallRequest.status.in_(("pending", "deferred"))))).scalars().all()
    if not pending:
        return 0
    woken = 0
    try:
        client = await ctx.temporal.client()
        for event_row_id in pending:
            try:
                await client.get_workflow_handle(outbound_call_workflow_id(tenant_id, event_row_id)).signal("recheck")
                woken += 1
            except Exception as exc:  # already finished, or Temporal away: the timer's check still holds
                log.info("recheck signal not delivered (%s)", type(exc).__name__)
    except Exception as exc:
        log.info("Temporal unavailable for recheck (%s)", type(exc).__name__)
    return woken


def _call_view(call: CallRequest) -> dict[str, Any]:
    return {"id": str(call.id), "provider": call.provider, "object": call.object, "external_id": call.external_id,
            "purpose": call.purpose, "channel": call.channel,
            "placed_at": call.placed_at.isoformat() if call.placed_at else None}


async def list_calls(request: Request) -> Response:
    tenant_id = require_agent(request).require_tenant()
    async with context_of(request).sessions() as session:
        rows = (await session.execute(select(CallRequest).where(
            CallRequest.tenant_id == tenant_id, CallRequest.status == "placed", CallRequest.pulled_at.is_(None),
            CallRequest.delivered_at.is_(None)).order_by(CallRequest.placed_at).limit(100))).scalars()
        return JSONResponse({"call_requests": [_call_view(c) for c in rows]})


async def claim_call(request: Request) -> Response:
    tenant_id = require_agent(request).require_tenant()
    call_id: uuid.UUID = request.path_params["call_id"]
    async with context_of(request).sessions() as session, session.begin():
        result = await session.execute(update(CallRequest).where(
            CallRequest.id == call_id, CallRequest.tenant_id == tenant_id, CallRequest.status == "placed",
            CallRequest.pulled_at.is_(None), CallRequest.delivered_at.is_(None)).values(pulled_at=datetime.now(UTC)))
        if not getattr(result, "rowcount", 0):
            raise Problem(409, "already-claimed", "This call request is unknown, not placed, or already taken.")
        call = await session.get(CallRequest, call_id)
        assert call is not None
        return JSONResponse(_call_view(call))


routes = [
    Route(f"{PREFIX}/consents", grant, methods=["POST"]),
    Route(f"{PREFIX}/consents/revoke", revoke, methods=["POST"]),
    Route(f"{PREFIX}/do-not-call", do_not_call, methods=["POST"]),
    Route("/api/agent/call-requests", list_calls, methods=["GET"]),
    Route("/api/agent/call-requests/{call_id:uuid}/claim", claim_call, methods=["POST"]),
]
