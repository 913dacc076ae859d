"""The HubSpot sandbox's Webhooks v3 API and its deliveries: developer-key auth, settings and subscriptions,
events only for subscribed types, v3 signatures our verifier accepts, retries with attemptNumber + 1."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from drivers.hubspot_webhooks import HubSpotVerifier
from drivers.webhooks import WebhookRequest
from sandboxes import hubspot as hubspot_sandbox


def _receiver(received: list[WebhookRequest], status: list[int]) -> Starlette:
    async def hook(request: Request) -> Response:
        received.append(WebhookRequest("POST", str(request.url), {k.lower(): v for k, v in request.headers.items()},
                                       await request.body()))
        return Response(status_code=status[0])

    return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


async def test_subscriptions_and_signed_deliveries() -> None:
    app = hubspot_sandbox.create_app()
    state: hubspot_sandbox.HubSpotState = app.state.sandbox
    hooks = state.webhooks
    received: list[WebhookRequest] = []
    status = [503]
    hooks.transport = httpx.ASGITransport(app=_receiver(received, status))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://api.hubapi.com") as api:
        base = f"/webhooks/v3/{hooks.app_id}"
        assert (await api.put(f"{base}/settings", json={"targetUrl": "https://x/hook"})).status_code == 401
        key = {"hapikey": hooks.developer_api_key}
        assert (await api.put(f"{base}/settings", params=key, json={"targetUrl": "nope"})).status_code == 400
        assert (await api.put(f"{base}/settings", params=key,
                              json={"targetUrl": "https://receiver.test/hook"})).status_code == 200
        created = await api.post(f"{base}/subscriptions", params=key, json={"eventType": "contact.creation"})
        assert created.status_code == 201
        assert (await api.post(f"{base}/subscriptions", params=key, json={"eventType": "x.y"})).status_code == 400

    state.add("contacts", {"email": "a@example.com"})
    state.add("deals", {"dealname": "not subscribed"})
    assert len(hooks.pending) == 1
    assert await hooks.flush() == 0 and hooks.pending[0]["attemptNumber"] == 1  # 503: kept, retried later
    status[0] = 204
    assert await hooks.flush() == 1 and hooks.pending == []
    last = received[-1]
    assert HubSpotVerifier().verify(last, {"secret": state.tokens.client_secret}, datetime.now(UTC))
    assert not HubSpotVerifier().verify(last, {"secret": "another app"}, datetime.now(UTC))
    (event,) = json.loads(last.body)
    assert event["subscriptionType"] == "contact.creation" and event["portalId"] == state.portal_id
