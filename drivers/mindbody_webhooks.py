"""Mindbody Webhooks API deliveries (attach as `MindbodyDriver.webhook_verifier = MindbodyVerifier()`).

developers.mindbodyonline.com/WebhooksDocumentation: `X-Mindbody-Signature: sha256=<base64(HMAC-SHA256(key =
UTF-8 bytes of the subscription's messageSignatureKey, msg = raw body))>` — the key string is used as-is,
not base64-decoded. The signature covers no timestamp, so after it passes, `eventInstanceOriginationDateTime`
bounds replays: Mindbody retries every 15 min for up to 3 h, so events older than 4 h (or more than 5 min in
the future) are refused; dedupe on `messageId` covers redeliveries inside that window. Subscription setup:
Mindbody probes the URL with HEAD (answered 200) before `PATCH /subscriptions/{id} {"Status": "Active"}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from drivers.webhooks import (
    InboundEvent,
    WebhookRequest,
    WebhookVerifier,
    hmac_b64,
    parse_json,
    parse_time,
    prefixed,
    same,
)

_OBJECTS = {"client": "customer", "appointment": "appointment", "classRosterBooking": "appointment",
            "site": None}
_KINDS = {"created": "created", "booked": "created", "updated": "updated", "cancelled": "updated",
          "completed": "updated", "deactivated": "updated", "merged": "merged", "deleted": "deleted"}
_ID_FIELDS = ("clientId", "appointmentId", "id")


def sign(message_signature_key: str, body: bytes) -> str:
    return "sha256=" + hmac_b64(message_signature_key.encode("utf-8"), body)


@dataclass
class MindbodyVerifier(WebhookVerifier):
    slug: ClassVar[str] = "mindbody"
    required_headers: ClassVar[tuple[str, ...]] = ("x-mindbody-signature",)
    max_age: timedelta = field(default=timedelta(hours=4))

    def verify(self, request: WebhookRequest, secret: Mapping[str, Any], now: datetime) -> bool:
        given, key = prefixed(request.header("x-mindbody-signature"), "sha256="), self.key(secret)
        if given is None or key is None or not same(sign(key, request.body), "sha256=" + given):
            return False
        # Authentic: now it may be parsed, for its event time.
        return self.body_time_fresh(request.body, "eventInstanceOriginationDateTime", now)

    def events(self, request: WebhookRequest) -> list[InboundEvent]:
        doc = parse_json(request.body)
        if not isinstance(doc, dict) or not doc.get("messageId") or not isinstance(doc.get("eventId"), str):
            raise ValueError("not a Mindbody event")
        prefix, _, action = doc["eventId"].partition(".")
        data: dict[str, Any] = doc["eventData"] if isinstance(doc.get("eventData"), dict) else {}
        external = next((str(data[f]) for f in _ID_FIELDS if data.get(f) is not None), None)
        return [InboundEvent(event_id=str(doc["messageId"]), event_type=doc["eventId"][:64],
                             object=_OBJECTS.get(prefix), external_id=external,
                             kind=_KINDS.get(action, "updated"),  # type: ignore[arg-type]
                             occurred_at=parse_time(doc.get("eventInstanceOriginationDateTime")),
                             account_id=str(data["siteId"]) if data.get("siteId") is not None else None)]

    def account_matches(self, event: InboundEvent, settings: Mapping[str, Any]) -> bool:
        site = settings.get("site_id")
        return site is None or event.account_id == str(site)
