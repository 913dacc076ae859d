"""HubSpot sandbox: the Webhooks v3 API (per app) and signed event deliveries.

Wire facts (../shared/reference, HubSpot §1.7): subscriptions are per app — `GET|PUT /webhooks/v3/{appId}/settings`
(`targetUrl`, `throttling`) and `GET|POST /webhooks/v3/{appId}/subscriptions` (`eventType`, `propertyName`,
`active`), authenticated with the developer API key (`?hapikey=`). Deliveries are a JSON array of up to 100
events (`eventId`, `subscriptionId`, `portalId`, `appId`, `occurredAt` ms, `subscriptionType`, `attemptNumber`,
`objectId`, `propertyName`/`propertyValue` for property changes, `changeSource`), POSTed to the target URL with
`X-HubSpot-Signature-v3` = base64(HMAC-SHA256(app client secret, POST + URL + body + timestamp)) and
`X-HubSpot-Request-Timestamp` (ms). A non-2xx delivery is retried (`attemptNumber` + 1), as HubSpot does.

Deliveries leave only when `flush()` runs (tests call it, or `POST /__sandbox__/webhooks/flush`), so a test
decides when the CRM "sends".
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from drivers.hubspot_webhooks import sign_v3
from sandboxes.hubspot_wire import error

_PREFIX = {"contacts": "contact", "deals": "deal", "tickets": "ticket"}
MAX_BATCH = 100


@dataclass
class HubSpotWebhooks:
    app_id: int = 54321
    developer_api_key: str = "hubspot-developer-api-key"
    client_secret: str = "hubspot-client-secret"  # the app's: it signs every delivery
    target_url: str | None = None
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)
    delivered: list[dict[str, Any]] = field(default_factory=list)
    transport: httpx.AsyncBaseTransport | None = None  # how deliveries reach the target (tests: ASGI)
    next_event_id: int = 1
    portal_id: int = 62515

    def emit(self, object_type: str, object_id: str, action: str, occurred_ms: int,
             property_name: str | None = None, property_value: Any = None) -> None:
        """Queue an event for every active subscription that wants it (creation/propertyChange/deletion)."""
        prefix = _PREFIX.get(object_type)
        if prefix is None:
            return
        event_type = f"{prefix}.{action}"
        for sub in self.subscriptions:
            if not sub["active"] or sub["eventType"] != event_type:
                continue
            if action == "propertyChange" and sub.get("propertyName") != property_name:
                continue
            event = {"eventId": self.next_event_id, "subscriptionId": sub["id"], "portalId": self.portal_id,
                     "appId": self.app_id, "occurredAt": occurred_ms, "subscriptionType": event_type,
                     "attemptNumber": 0, "objectId": int(object_id), "changeSource": "CRM"}
            if property_name is not None:
                event |= {"propertyName": property_name, "propertyValue": str(property_value)}
            self.next_event_id += 1
            self.pending.append(event)

    async def flush(self) -> int:
        """Deliver pending events in batches; the number delivered (failed batches stay, retried later)."""
        if not self.target_url or not self.pending:
            return 0
        delivered, kept = 0, list[dict[str, Any]]()
        batches = [self.pending[i:i + MAX_BATCH] for i in range(0, len(self.pending), MAX_BATCH)]
        self.pending = []
        async with httpx.AsyncClient(transport=self.transport) as http:
            for batch in batches:
                body = json.dumps(batch, separators=(",", ":")).encode()
                stamp = int(time.time() * 1000)
                headers = {"content-type": "application/json", "x-hubspot-request-timestamp": str(stamp),
                           "x-hubspot-signature-v3": sign_v3(self.client_secret, "POST", self.target_url, body,
                                                             stamp)}
                try:
                    response = await http.post(self.target_url, content=body, headers=headers)
                    ok = response.is_success
                except httpx.HTTPError:
                    ok = False
                if ok:
                    delivered += len(batch)
                    self.delivered.extend(batch)
                else:
                    kept.extend({**event, "attemptNumber": event["attemptNumber"] + 1} for event in batch)
        self.pending = kept + self.pending
        return delivered


def webhook_routes(hooks: HubSpotWebhooks) -> list[Route]:
    def authorized(request: Request) -> Response | None:
        if request.path_params["app_id"] != str(hooks.app_id):
            return error(404, "OBJECT_NOT_FOUND", "resource not found")
        if request.query_params.get("hapikey") != hooks.developer_api_key:
            return error(401, "INVALID_AUTHENTICATION", "The API key provided is invalid.")
        return None

    async def settings(request: Request) -> Response:
        if (refused := authorized(request)) is not None:
            return refused
        if request.method == "PUT":
            body = await request.json()
            if not str(body.get("targetUrl", "")).startswith(("https://", "http://")):
                return error(400, "VALIDATION_ERROR", "targetUrl must be a valid URL")
            hooks.target_url = body["targetUrl"]
        return JSONResponse({"targetUrl": hooks.target_url,
                             "throttling": {"maxConcurrentRequests": 10, "period": "SECONDLY"}})

    async def subscriptions(request: Request) -> Response:
        if (refused := authorized(request)) is not None:
            return refused
        if request.method == "GET":
            return JSONResponse({"results": hooks.subscriptions})
        body = await request.json()
        event_type = str(body.get("eventType", ""))
        if event_type.partition(".")[0] not in _PREFIX.values():
            return error(400, "VALIDATION_ERROR", f"Unknown event type {event_type}")
        sub = {"id": 1000 + len(hooks.subscriptions), "eventType": event_type,
               "propertyName": body.get("propertyName"), "active": bool(body.get("active", True))}
        hooks.subscriptions.append(sub)
        return JSONResponse(sub, status_code=201)

    async def flush(request: Request) -> Response:
        return JSONResponse({"delivered": await hooks.flush(), "pending": len(hooks.pending)})

    return [
        Route("/webhooks/v3/{app_id}/settings", settings, methods=["GET", "PUT"]),
        Route("/webhooks/v3/{app_id}/subscriptions", subscriptions, methods=["GET", "POST"]),
        Route("/__sandbox__/webhooks/flush", flush, methods=["POST"]),
    ]
