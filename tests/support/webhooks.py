"""A rig for inbound-webhook tests and the webhook bench: the API app, a HubSpot sandbox that delivers signed
webhooks to it, a Standard Webhooks dialer that verifies and records call requests, and the outbound worker.

Everything is real HTTP through httpx's ASGI transport: the sandbox POSTs to the app, the activity POSTs to
the dialer; Temporal is whichever environment the test passes.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from temporalio.client import Client
from temporalio.worker import Worker

from activities.outbound import OutboundActivities
from api.app import create_app
from api.auth import mint_token
from api.context import AppContext
from api.temporal import TemporalGateway
from drivers.base import CrmObject
from sandboxes.hubspot import HubSpotState
from settings import Settings
from tests.support.sandbox_provider import SandboxDriverProvider
from tests.support.tenants import create_tenant
from vault.connections import Actor
from vault.credentials import CredentialVault
from worker import dialer_secret_loader
from workflows.outbound_call import OutboundCallWorkflow

DIALER_URL = "http://dialer.test/calls"
ACTOR = Actor(type="system", id="test", purpose="seed the CRM")


@dataclass
class Dialer:
    """The agent platform's dialer: verifies each call request's signature and dedupes on webhook-id."""

    secret: str | None = None
    posts: list[dict[str, Any]] = field(default_factory=list)
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            body = await request.body()
            assert self.secret is not None
            try:
                payload = Webhook(self.secret).verify(body, dict(request.headers))
            except WebhookVerificationError:
                return Response(status_code=401)
            self.posts.append(payload)
            self.calls.setdefault(request.headers["webhook-id"], payload)
            return Response(status_code=204)

        return Starlette(routes=[Route("/calls", receive, methods=["POST"])])


@dataclass
class WebhookRig:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    tenant_id: uuid.UUID
    drivers: SandboxDriverProvider
    api: httpx.AsyncClient
    dialer: Dialer
    ctx: AppContext
    app: Starlette

    @property
    def crm(self) -> HubSpotState:
        state: HubSpotState = self.drivers.state("hubspot")
        return state

    def operator(self) -> dict[str, str]:
        token = mint_token(self.settings, subject="op-1", role="operator", tenant_id=self.tenant_id)
        return {"authorization": f"Bearer {token}"}

    def path(self, suffix: str) -> str:
        return f"/api/operator/tenants/{self.tenant_id}/{suffix}"

    async def configure(self, *, purpose: str = "new_lead_callback", phone: str | None = "+12125550100",
                        policy: dict[str, Any] | None = None) -> None:
        """Webhook secret, sandbox subscription, a trigger, the dialer, and (when `phone`) consent on file."""
        hooks = self.crm.webhooks
        answer = await self.api.put(self.path("webhooks/hubspot"), headers=self.operator(),
                                    json={"secret": hooks.client_secret})
        assert answer.status_code == 200, answer.text
        hooks.target_url = answer.json()["url"]
        hooks.transport = httpx.ASGITransport(app=self.app)
        hooks.subscriptions.append({"id": 1, "eventType": "contact.creation", "propertyName": None, "active": True})
        trigger = await self.api.post(self.path("triggers"), headers=self.operator(), json={
            "name": "call new web leads within 5 minutes", "object": "customer", "kinds": ["created"],
            "purpose": purpose, "within_minutes": 5})
        assert trigger.status_code == 201, trigger.text
        answer = await self.api.put(self.path("outbound-policy"), headers=self.operator(),
                                    json={"dialer_url": DIALER_URL, **(policy or {})})
        assert answer.status_code == 200, answer.text
        self.dialer.secret = answer.json()["dialer_secret"]
        if phone is not None:
            granted = await self.api.post(self.path("consents"), headers=self.operator(), json={
                "phone": phone, "purpose": purpose, "channel": "voice", "source": "web_form:contact-us"})
            assert granted.status_code == 201, granted.text

    async def new_contact(self, phone: str = "+12125550100", key: str | None = None) -> str:
        """A contact created through the HubSpot API (the driver), as a CRM user would."""
        async with self.drivers.open(self.tenant_id, ACTOR) as driver:
            created = await driver.create_record(CrmObject.CUSTOMER, {
                "firstname": "Ada", "lastname": "Lovelace", "email": f"{uuid.uuid4().hex[:8]}@example.com",
                "phone": phone}, key or str(uuid.uuid4()))
        return created.external_id

    def worker(self, client: Client) -> Worker:
        vault = CredentialVault.from_settings(self.settings, self.sessions)
        dialer_app = self.dialer.app()
        activities = OutboundActivities(
            self.sessions, self.drivers, self.settings.subject_hash_key.get_secret_value(),
            dialer_secret=dialer_secret_loader(vault),
            http=lambda: httpx.AsyncClient(transport=httpx.ASGITransport(app=dialer_app)))
        return Worker(client, task_queue=self.settings.temporal.task_queue, workflows=[OutboundCallWorkflow],
                      activities=activities.all())


class UnreachableTemporal(TemporalGateway):
    """Temporal is away: webhooks must still be stored and acked (and dispatched later)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.temporal)

    async def client(self) -> Client:
        raise ConnectionError("Temporal unreachable (test)")


@asynccontextmanager
async def webhook_rig(settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
                      client: Client | None, *, provider: str = "hubspot") -> AsyncIterator[WebhookRig]:
    """The rig; `client=None` means Temporal is unreachable from the API."""
    drivers = SandboxDriverProvider(sessions)
    crm: HubSpotState = drivers.state("hubspot").instant_search()  # polling tests are not about search lag
    tenant_id = await create_tenant(sessions, provider=provider, settings={"portal_id": crm.portal_id})
    gateway = UnreachableTemporal(settings) if client is None else TemporalGateway(settings.temporal, client=client)
    ctx = AppContext(settings=settings, engine=engine, sessions=sessions, temporal=gateway)
    app = create_app(context=ctx)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api:
            yield WebhookRig(settings, sessions, tenant_id, drivers, api, Dialer(), ctx, app)
    finally:
        await drivers.aclose()
