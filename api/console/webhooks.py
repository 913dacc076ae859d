"""The webhooks and triggers page: the tenant's inbound subscription, polling, recent events (by id and kind),
trigger rules, the calling policy and the consent/quiet-hour decisions on call requests.

Read-only: configuring these stays with the operator routes in api/routes/outbound.py and consent.py (the page
names them). Events and decisions are ids, kinds, states and reason codes — no customer content.
"""

from __future__ import annotations

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from api.console.web import Operator, page, render, temporal_ui_url
from api.context import context_of
from api.webhook_secrets import credential_name
from drivers.webhooks import verifier_for
from store import outbound
from store.models import TenantCredential
from store.outbound_models import CallRequest, InboundCrmEvent, OutboundTrigger, PollCursor

RECENT = 50


@page
async def webhooks_page(request: Request, operator: Operator) -> Response:
    ctx = context_of(request)
    tenant = request.state.tenant
    verifier = verifier_for(tenant.provider)
    async with ctx.sessions() as session:
        secret_stored = (await session.execute(select(TenantCredential.id).where(
            TenantCredential.tenant_id == tenant.id,
            TenantCredential.provider == credential_name(tenant.provider)))).first() is not None
        events = list((await session.execute(select(InboundCrmEvent).where(InboundCrmEvent.tenant_id == tenant.id)
                                             .order_by(InboundCrmEvent.received_at.desc()).limit(RECENT))).scalars())
        triggers = list((await session.execute(select(OutboundTrigger).where(OutboundTrigger.tenant_id == tenant.id)
                                               .order_by(OutboundTrigger.created_at))).scalars())
        decisions = list((await session.execute(select(CallRequest).where(CallRequest.tenant_id == tenant.id)
                                                .order_by(CallRequest.created_at.desc()).limit(RECENT))).scalars())
        cursors = list((await session.execute(select(PollCursor).where(PollCursor.tenant_id == tenant.id)
                                              .order_by(PollCursor.object))).scalars())
        policy = await outbound.policy(session, tenant.id)
    signs_with_app = (verifier is not None and verifier.app_secret_signs
                      and tenant.provider in ctx.settings.oauth_clients)
    delivery_url = f"{ctx.settings.public_base_url.rstrip('/')}/webhooks/crm/{tenant.provider}/{tenant.id}"
    return render(request, "webhooks.html", tenant=tenant, verifier=verifier, secret_stored=secret_stored,
                  signs_with_app=signs_with_app, delivery_url=delivery_url, events=events, triggers=triggers,
                  decisions=decisions, cursors=cursors, policy=policy, active="Webhooks & triggers",
                  temporal_url=temporal_ui_url(ctx, tenant.id))

