"""athenahealth FHIR Subscriptions (backport) deliveries (attach as
`AthenahealthDriver.webhook_verifier = AthenaVerifier()`).

athenahealth/aone-fhir-subscriptions README §4–5: a rest-hook POST of a FHIR `Bundle` (type `history`) signed
WebSub-style, `X-Hub-Signature: sha256=<hex HMAC-SHA256(X-Hub-Secret given at subscription, raw body)>`
(W3C WebSub §8: the `method=` prefix is checked; only sha256/384/512 are accepted, never sha1). The answer
must be a 2xx within 2 s, so the route stores and acks. Delivery is at least once and retried for 1 h, then
a dead-letter queue replayable for 7 days: `Bundle.timestamp` older than 8 days is refused; dedupe is on
`notificationEvent[].id`. A handshake or heartbeat bundle (no notificationEvent) verifies and yields no event.
The WebSub intent check (GET with `hub.mode` and `hub.challenge`) is answered by echoing the challenge.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from drivers.webhooks import (
    InboundEvent,
    WebhookRequest,
    WebhookVerifier,
    parse_json,
    parse_time,
    same,
)

_METHODS = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
_OBJECTS = {"Patient": "customer", "Appointment": "appointment"}
_KINDS = {"create": "created", "update": "updated", "delete": "deleted", "merge": "merged"}


def sign(secret: str, body: bytes, method: str = "sha256") -> str:
    return f"{method}=" + hmac.new(secret.encode(), body, _METHODS[method]).hexdigest()


def _focus_id(focus: Mapping[str, Any]) -> str | None:
    identifier = focus.get("identifier")
    if isinstance(identifier, dict) and identifier.get("value"):
        return str(identifier["value"])
    reference = str(focus.get("reference") or "")  # Patient/a-{practice}.E-{patientid}
    return reference.rpartition(".E-")[2] or reference.rpartition("/")[2] or None


@dataclass
class AthenaVerifier(WebhookVerifier):
    slug: ClassVar[str] = "athenahealth"
    required_headers: ClassVar[tuple[str, ...]] = ("x-hub-signature",)
    max_age: timedelta = field(default=timedelta(days=8))

    def verify(self, request: WebhookRequest, secret: Mapping[str, Any], now: datetime) -> bool:
        header, key = request.header("x-hub-signature"), self.key(secret)
        if not header or key is None:
            return False
        method = header.partition("=")[0]
        if method not in _METHODS or not same(sign(key, request.body, method), header):
            return False
        return self.body_time_fresh(request.body, "timestamp", now)

    def events(self, request: WebhookRequest) -> list[InboundEvent]:
        bundle = parse_json(request.body)
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise ValueError("not a FHIR Bundle")
        out = []
        for entry in bundle.get("entry") or []:
            status = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(status, dict) or status.get("resourceType") != "SubscriptionStatus":
                continue
            topic = str(status.get("topic") or "").rpartition("/")[2]  # e.g. Appointment.create
            resource, _, action = topic.partition(".")
            for event in status.get("notificationEvent") or []:
                if not isinstance(event, dict) or not event.get("id"):
                    raise ValueError("notification event without id")
                focus: dict[str, Any] = event["focus"] if isinstance(event.get("focus"), dict) else {}
                out.append(InboundEvent(
                    event_id=str(event["id"]), event_type=topic[:64] or "notification",
                    object=_OBJECTS.get(resource), external_id=_focus_id(focus),
                    kind=_KINDS.get(action, "updated"),  # type: ignore[arg-type]
                    occurred_at=parse_time(event.get("timestamp") or bundle.get("timestamp"))))
        return out

    def probe(self, method: str, query: Mapping[str, str]) -> tuple[int, str] | None:
        if method == "GET" and query.get("hub.mode") in ("subscribe", "unsubscribe") and query.get("hub.challenge"):
            return 200, query["hub.challenge"]
        return super().probe(method, query)
