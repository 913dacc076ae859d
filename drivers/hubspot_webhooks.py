"""HubSpot webhook deliveries: signature v3 and the event array (declared by `HubSpotDriver.webhook_verifier`).

Signature v3 (developers.hubspot.com/docs/apps/developer-platform/build-apps/authentication/request-validation;
HubSpot/hubspot-api-python `hubspot/utils/signature.py`): `X-HubSpot-Signature-v3 =
base64(HMAC-SHA256(client_secret, METHOD + URI + BODY + TIMESTAMP))` with `X-HubSpot-Request-Timestamp` in
epoch milliseconds; HubSpot refuses deliveries older than 5 minutes and so do we (and, against replays of a
captured request, ones more than 5 minutes in the future). The URI is the full URL HubSpot called, with the
doc's table of percent-encoded characters decoded. The key is the app's client secret: subscriptions are per
app, so the tenant is told apart by the path and by `portalId`.

Body: a JSON array of `{eventId, subscriptionId, portalId, occurredAt (ms), subscriptionType, objectId,
propertyName?, propertyValue?, changeSource, ...}`. `propertyValue` is customer content and is dropped here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from drivers.webhooks import (
    InboundEvent,
    WebhookRequest,
    WebhookVerifier,
    hmac_b64,
    parse_json,
    parse_time,
    same,
    within_tolerance,
)

# The doc's decode table: HubSpot signs the URI with these characters decoded.
_DECODE = {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'", "%28": "(",
           "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}
_OBJECTS = {"contact": "customer", "deal": "deal", "ticket": "case", "company": "company"}
_KINDS = {"creation": "created", "propertyChange": "updated", "deletion": "deleted", "merge": "merged",
          "restore": "updated", "associationChange": "updated", "privacyDeletion": "deleted"}


def decoded_uri(url: str) -> str:
    for encoded, plain in _DECODE.items():
        url = url.replace(encoded, plain).replace(encoded.lower(), plain)
    return url


def sign_v3(client_secret: str, method: str, url: str, body: bytes, timestamp_ms: int) -> str:
    """The `X-HubSpot-Signature-v3` value (also what the HubSpot sandbox sends)."""
    message = method.upper().encode() + decoded_uri(url).encode() + body + str(timestamp_ms).encode()
    return hmac_b64(client_secret.encode(), message)


@dataclass
class HubSpotVerifier(WebhookVerifier):
    slug: ClassVar[str] = "hubspot"
    app_secret_signs: ClassVar[bool] = True  # v3 signatures use the app's client secret
    required_headers: ClassVar[tuple[str, ...]] = ("x-hubspot-signature-v3", "x-hubspot-request-timestamp")

    def verify(self, request: WebhookRequest, secret: Mapping[str, Any], now: datetime) -> bool:
        signature, stamp = (request.header(h) for h in self.required_headers)
        key = self.key(secret)
        if not (signature and stamp and stamp.isdigit() and key):
            return False
        if not within_tolerance(datetime.fromtimestamp(int(stamp) / 1000, UTC), now, self.tolerance):
            return False
        return same(sign_v3(key, request.method, request.url, request.body, int(stamp)), signature)

    def events(self, request: WebhookRequest) -> list[InboundEvent]:
        items = parse_json(request.body)
        if not isinstance(items, list) or not items:
            raise ValueError("not a HubSpot event array")
        out = []
        for item in items:
            if not isinstance(item, dict) or "eventId" not in item or "subscriptionType" not in item:
                raise ValueError("not a HubSpot event")
            prefix, _, action = str(item["subscriptionType"]).partition(".")
            changed = (str(item["propertyName"]),) if item.get("propertyName") else ()
            out.append(InboundEvent(
                event_id=str(item["eventId"]), event_type=str(item["subscriptionType"])[:64],
                object=_OBJECTS.get(prefix), external_id=str(item["objectId"]) if "objectId" in item else None,
                kind=_KINDS.get(action, "updated"),  # type: ignore[arg-type]  # values are EventKinds
                occurred_at=parse_time(item.get("occurredAt")), changed_fields=changed,
                account_id=str(item["portalId"]) if item.get("portalId") is not None else None))
        return out

    def account_matches(self, event: InboundEvent, settings: Mapping[str, Any]) -> bool:
        portal = settings.get("portal_id") or settings.get("hub_id")
        return portal is None or event.account_id == str(portal)
