"""`POST /webhooks/crm/{provider}/{tenant}`: verify, store, ack — then process durably in Temporal.

Order: the raw body is read under a size cap; the tenant must exist with this provider and a webhook secret;
the provider's verifier checks the signature over the raw bytes (constant time) and the timestamp; only then is
the body parsed into normalized events, which are inserted with `ON CONFLICT DO NOTHING` on (tenant, provider,
event id) and committed **before** the 2xx. A redelivery is acked (2xx, `new: 0`) and never processed twice.
Workflows start after the response (a background task), so the answer never waits on Temporal
(some providers allow 2 s).

Every refusal of an authentic-looking delivery — unknown tenant, provider mismatch, no secret, missing header,
bad signature, stale or future timestamp — is the same 401 problem: no oracle about which check failed.
A provider that signs nothing posts to `/webhooks/crm/{provider}/{tenant}/{token}` (a secret path token).
HEAD and GET on the same paths answer the providers' validation probes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from api import webhook_dispatch
from api.context import AppContext, context_of
from api.errors import Problem
from api.event_writer import EventWriter
from api.webhook_secrets import secret_for
from drivers.webhooks import InboundEvent, WebhookRequest, WebhookVerifier, verifier_for
from store.models import Tenant

log = logging.getLogger(__name__)
TENANT_TTL = 5.0
DECOY_SECRET = {"secret": "whsec_ZGVjb3ktc2VjcmV0LW5ldmVyLXVzZWQ=", "path_token": "-", "org_id": "000000000000000"}
TENANT_CACHE_MAX = 10_000
MAX_BODY_BYTES = 512 * 1024  # batches of up to 100 events fit; single-event bodies stay under 20 kB
PREFIX = "/webhooks/crm/{provider}/{tenant}"


def _refused() -> Problem:
    return Problem(401, "webhook-refused", "The delivery could not be verified.")


def _verifier(request: Request) -> WebhookVerifier:
    verifier = verifier_for(request.path_params["provider"])
    if verifier is None:
        raise Problem(404, "not-found", "No webhook endpoint for this provider.")
    return verifier


async def _raw_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise Problem(413, "body-too-large", f"The body exceeds {MAX_BODY_BYTES} bytes.")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise Problem(413, "body-too-large", f"The body exceeds {MAX_BODY_BYTES} bytes.")
    return bytes(raw)


async def _tenant(ctx: AppContext, request: Request) -> Tenant:
    try:
        tenant_id = uuid.UUID(request.path_params["tenant"])
    except ValueError:
        raise _refused() from None
    # A burst of deliveries reads the tenant once per few seconds (a disable takes effect within TENANT_TTL).
    cache: dict[uuid.UUID, tuple[float, Tenant | None]] = ctx.extras.setdefault("webhook_tenants", {})
    locks: dict[uuid.UUID, asyncio.Lock] = ctx.extras.setdefault("webhook_tenant_locks", {})
    if len(cache) > TENANT_CACHE_MAX:  # random tenant ids must not grow memory without bound
        cache.clear()
        locks.clear()
    async with locks.setdefault(tenant_id, asyncio.Lock()):  # one read per burst, not one per delivery
        hit = cache.get(tenant_id)
        if hit is not None and time.monotonic() - hit[0] < TENANT_TTL:
            tenant = hit[1]
        else:
            async with ctx.sessions() as session:
                tenant = await session.get(Tenant, tenant_id)
            cache[tenant_id] = (time.monotonic(), tenant)
    if tenant is None or tenant.provider != request.path_params["provider"] or tenant.status == "disabled":
        raise _refused()
    return tenant


def _public_url(ctx: AppContext, request: Request) -> str:
    """The URL the provider called, as configured (`public_base_url`): behind a proxy the socket's differs."""
    query = f"?{request.url.query}" if request.url.query else ""
    return ctx.settings.public_base_url.rstrip("/") + request.url.path + query


async def receive(request: Request) -> Response:
    ctx, verifier = context_of(request), _verifier(request)
    body = await _raw_body(request)
    headers = {k.lower(): v for k, v in request.headers.items()}
    delivery = WebhookRequest(method=request.method, url=_public_url(ctx, request), headers=headers, body=body,
                              path_token=request.path_params.get("token"))
    try:
        tenant = await _tenant(ctx, request)
    except Problem:
        # The same work as a real check before the same refusal: timing tells no tenant from a bad signature.
        verifier.verify(delivery, DECOY_SECRET, datetime.now(UTC))
        raise
    if any(not headers.get(name) for name in verifier.required_headers):
        raise _refused()
    secret = await secret_for(ctx, tenant.id, tenant.provider)
    if secret is None or not verifier.verify(delivery, secret, datetime.now(UTC)):
        raise _refused()
    try:
        events = verifier.events(delivery)
    except (ValueError, KeyError, TypeError, AttributeError):
        raise Problem(422, "invalid-event", "The verified body is not an event of this provider.") from None
    mine = [e for e in events if verifier.account_matches(e, tenant.settings or {})]
    writer = ctx.extras.get("webhook_event_writer")
    if writer is None:
        writer = ctx.extras["webhook_event_writer"] = EventWriter(ctx.sessions)
    new_ids = await writer.write([_row(tenant, e) for e in mine])
    task = BackgroundTask(_process, ctx, [(tenant.id, row_id) for row_id in new_ids])
    if verifier.ack is not None:
        media_type, content = verifier.ack
        return Response(content, media_type=media_type, background=task)
    return JSONResponse({"received": len(events), "new": len(new_ids), "ignored": len(events) - len(mine)},
                        background=task)


async def _process(ctx: AppContext, events: list[tuple[uuid.UUID, uuid.UUID]]) -> None:
    """After the ack: hand the new events to Temporal. Nothing here may fail the request (it is answered);
    whatever is not handed over stays `received` for the redispatch."""
    try:
        await webhook_dispatch.dispatch(ctx, events)
        await webhook_dispatch.redispatch_stale(ctx)
    except Exception as exc:
        log.warning("dispatch after ack failed (%s); events stay received", type(exc).__name__)


def _row(tenant: Tenant, event: InboundEvent) -> dict[str, Any]:
    return {"id": uuid.uuid4(), "tenant_id": tenant.id, "provider": tenant.provider,
            "event_id": event.event_id[:255], "event_type": event.event_type[:64], "object": event.object,
            "external_id": event.external_id[:255] if event.external_id else None, "status": "received",
            "received_at": datetime.now(UTC), "kind": event.kind, "occurred_at": event.occurred_at,
            "changed_fields": list(event.changed_fields), "source": "webhook"}


async def probe(request: Request) -> Response:
    """Subscription validation probes (a HEAD, a WebSub GET challenge), answered by the verifier; known tenants
    only."""
    ctx, verifier = context_of(request), _verifier(request)
    await _tenant(ctx, request)
    answer = verifier.probe(request.method, dict(request.query_params))
    if answer is None:
        raise Problem(405, "method-not-allowed", "This provider sends no validation probe.")
    status, text = answer
    return PlainTextResponse(text, status_code=status)


routes = [
    Route(PREFIX, receive, methods=["POST"]),
    Route(PREFIX + "/{token}", receive, methods=["POST"]),
    Route(PREFIX, probe, methods=["GET", "HEAD"]),
]
