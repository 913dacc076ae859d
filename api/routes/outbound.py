"""Operator routes for CRM-triggered outbound calls (operator JWT, pinned to the tenant):

- `GET|POST /triggers`, `PUT|DELETE /triggers/{id}`: which events prompt a call, with which conditions, for what;
- `GET|PUT /outbound-policy`: the calling window (only stricter than 08:00–21:00), daily cap, dialer URL (its
  Standard Webhooks secret is generated, stored in the vault and shown once);
- `PUT /polling` {objects, every_minutes}: the polling Schedule for CRMs without webhooks;
- `PUT /webhooks/{provider}`: the tenant's webhook secret, a generated one, or the provider's account id with a
  generated secret path token (the verifier's `secret_kind`); answers the delivery URL to set at the provider.
Consent and do-not-call live in api/routes/consent.py.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.auth import Principal, require_operator
from api.context import context_of
from api.errors import Problem, read_json
from api.outbound_schemas import (
    OBJECTS,
    PolicyBody,
    PollingBody,
    TriggerBody,
    WebhookConfigBody,
    refuse,
    trigger_problems,
)
from api.polling import ensure_poll_schedule
from api.webhook_secrets import store_secret, vault_of
from drivers.webhooks import verifier_for
from store import outbound
from store.models import Tenant
from store.outbound_models import OutboundPolicy, OutboundTrigger
from store.outbound_rules import parse_window
from vault.connections import Actor

PREFIX = "/api/operator/tenants/{tenant_id:uuid}"


def _operator(request: Request) -> tuple[uuid.UUID, Principal]:
    tenant_id: uuid.UUID = request.path_params["tenant_id"]
    return tenant_id, require_operator(request, tenant_id)


def _actor(principal: Principal, purpose: str) -> Actor:
    return Actor(type="platform_operator", id=principal.subject, purpose=purpose)


def _view(trigger: OutboundTrigger) -> dict[str, Any]:
    return {"id": str(trigger.id), "name": trigger.name, "object": trigger.object, "kinds": trigger.kinds,
            "conditions": trigger.conditions, "purpose": trigger.purpose, "channel": trigger.channel,
            "within_minutes": trigger.within_minutes, "max_defer_hours": trigger.max_defer_hours,
            "enabled": trigger.enabled}


async def _trigger_body(request: Request) -> TriggerBody:
    body = TriggerBody.model_validate(await read_json(request))
    refuse(trigger_problems(body))
    return body


async def list_triggers(request: Request) -> Response:
    tenant_id, _ = _operator(request)
    async with context_of(request).sessions() as session:
        rows = (await session.execute(select(OutboundTrigger).where(OutboundTrigger.tenant_id == tenant_id)
                                      .order_by(OutboundTrigger.created_at))).scalars()
        return JSONResponse({"triggers": [_view(t) for t in rows]})


async def create_trigger(request: Request) -> Response:
    tenant_id, _ = _operator(request)
    body = await _trigger_body(request)
    trigger = OutboundTrigger(id=uuid.uuid4(), tenant_id=tenant_id, **body.model_dump())
    async with context_of(request).sessions() as session, session.begin():
        session.add(trigger)
    return JSONResponse(_view(trigger), status_code=201)


async def _owned(session: Any, tenant_id: uuid.UUID, trigger_id: uuid.UUID) -> OutboundTrigger:
    trigger = await session.get(OutboundTrigger, trigger_id)
    if trigger is None or trigger.tenant_id != tenant_id:
        raise Problem(404, "not-found", "No such trigger.")
    assert isinstance(trigger, OutboundTrigger)
    return trigger


async def replace_trigger(request: Request) -> Response:
    tenant_id, _ = _operator(request)
    body = await _trigger_body(request)
    async with context_of(request).sessions() as session, session.begin():
        trigger = await _owned(session, tenant_id, request.path_params["trigger_id"])
        for name, value in body.model_dump().items():
            setattr(trigger, name, value)
        return JSONResponse(_view(trigger))


async def delete_trigger(request: Request) -> Response:
    tenant_id, _ = _operator(request)
    async with context_of(request).sessions() as session, session.begin():
        await session.delete(await _owned(session, tenant_id, request.path_params["trigger_id"]))
    return Response(status_code=204)


def _policy_view(policy: OutboundPolicy) -> dict[str, Any]:
    return {"window_start": policy.window_start, "window_end": policy.window_end,
            "daily_attempt_cap": policy.daily_attempt_cap, "dialer_url": policy.dialer_url}


async def get_policy(request: Request) -> Response:
    tenant_id, _ = _operator(request)
    async with context_of(request).sessions() as session:
        policy = await session.get(OutboundPolicy, tenant_id)
    return JSONResponse(_policy_view(policy or OutboundPolicy(window_start="08:00", window_end="21:00",
                                                              daily_attempt_cap=3, dialer_url=None)))


async def put_policy(request: Request) -> Response:
    tenant_id, principal = _operator(request)
    body = PolicyBody.model_validate(await read_json(request))
    _, problems = parse_window(body.window_start, body.window_end)
    if body.dialer_url is not None and not body.dialer_url.startswith(("https://", "http://")):
        problems.append("dialer_url must be an http(s) URL")
    refuse(problems)
    ctx = context_of(request)
    async with ctx.sessions() as session, session.begin():
        policy = await session.get(OutboundPolicy, tenant_id)
        if policy is None:
            policy = OutboundPolicy(tenant_id=tenant_id)
            session.add(policy)
        first_dialer = policy.dialer_url is None and body.dialer_url is not None
        policy.window_start, policy.window_end = body.window_start, body.window_end
        policy.daily_attempt_cap, policy.dialer_url = body.daily_attempt_cap, body.dialer_url
    view = _policy_view(policy)
    if body.dialer_url is not None and (first_dialer or body.rotate_dialer_secret):
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        await vault_of(ctx).store(tenant_id, outbound.DIALER_CREDENTIAL, {"secret": secret},
                                  actor=_actor(principal, "configure outbound dialer"))
        view["dialer_secret"] = secret  # shown once: the dialer verifies our Standard Webhooks signature with it
    return JSONResponse(view)


async def put_webhook(request: Request) -> Response:
    tenant_id, principal = _operator(request)
    provider = request.path_params["provider"]
    ctx = context_of(request)
    async with ctx.sessions() as session:
        tenant = await session.get(Tenant, tenant_id)
    verifier = verifier_for(provider)
    if tenant is None or tenant.provider != provider or verifier is None:
        raise Problem(404, "not-found", "This tenant receives no webhooks from that provider.")
    body = WebhookConfigBody.model_validate(await read_json(request))
    url = f"{ctx.settings.public_base_url.rstrip('/')}/webhooks/crm/{provider}/{tenant_id}"
    answer: dict[str, Any] = {}
    if verifier.secret_kind == "path_token":
        if body.org_id is None or body.secret is not None:
            refuse([f"{provider} needs org_id (and no secret: the URL's path token is generated)"])
        token = secrets.token_urlsafe(32)
        secret: dict[str, Any] = {"path_token": token, "org_id": body.org_id}
        url += f"/{token}"
    elif body.secret is None and verifier.secret_kind == "generated":
        secret = {"secret": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()}
        answer["secret"] = secret["secret"]  # shown once, for the partner's signer
    elif body.secret is None or body.org_id is not None:
        refuse([f"{provider} needs its webhook secret (and no org_id)"])
        raise AssertionError("unreachable")
    else:
        secret = {"secret": body.secret}
    await store_secret(ctx, tenant_id, provider, secret, _actor(principal, "configure inbound webhooks"))
    return JSONResponse(answer | {"provider": provider, "url": url})


async def put_polling(request: Request) -> Response:
    """Poll the tenant's CRM for changes (for CRMs without webhooks): a Temporal Schedule over `list_recent`."""
    tenant_id, _ = _operator(request)
    body = PollingBody.model_validate(await read_json(request))
    refuse([f"objects: {o!r} is not one of {', '.join(OBJECTS)}" for o in body.objects if o not in OBJECTS])
    ctx = context_of(request)
    try:
        client = await ctx.temporal.client()
    except Exception:
        raise Problem(503, "temporal-unavailable", "The scheduler is briefly unavailable; retry.",
                      headers={"Retry-After": "5"}) from None
    state = await ensure_poll_schedule(client, tenant_id, body.objects, ctx.settings.temporal.task_queue,
                                       every=timedelta(minutes=body.every_minutes))
    return JSONResponse({"schedule": state, "objects": body.objects, "every_minutes": body.every_minutes})


routes = [
    Route(f"{PREFIX}/triggers", list_triggers, methods=["GET"]),
    Route(f"{PREFIX}/triggers", create_trigger, methods=["POST"]),
    Route(f"{PREFIX}/triggers/{{trigger_id:uuid}}", replace_trigger, methods=["PUT"]),
    Route(f"{PREFIX}/triggers/{{trigger_id:uuid}}", delete_trigger, methods=["DELETE"]),
    Route(f"{PREFIX}/outbound-policy", get_policy, methods=["GET"]),
    Route(f"{PREFIX}/outbound-policy", put_policy, methods=["PUT"]),
    Route(f"{PREFIX}/webhooks/{{provider}}", put_webhook, methods=["PUT"]),
    Route(f"{PREFIX}/polling", put_polling, methods=["PUT"]),
]
