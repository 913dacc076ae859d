"""Inbound CRM webhooks: the verifier interface, shared checks, and the normalized event shape.

A provider's verifier is declared by its driver (`webhook_verifier` ClassVar; the code lives in
`drivers/<slug>_webhooks.py` beside it, or here for the Standard Webhooks partners); `verifier_for(slug)` finds
it without any provider table in `api/`.

Every verifier works on the **raw body** bytes, before anything parses them, compares in constant time
(`hmac.compare_digest`) and answers only True/False: the receiving route turns every refusal into one and
the same problem, so a caller learns nothing about which check failed.

A verifier also normalizes a verified body into `InboundEvent`s: ids and metadata only (object, external id,
kind, occurred_at, changed field *names*), never field values — the CRM is the system of record.
"""

from __future__ import annotations

import abc
import base64
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook, WebhookVerificationError

__all__ = [
    "TOLERANCE",
    "EventKind",
    "InboundEvent",
    "StandardWebhooksVerifier",
    "WebhookRequest",
    "WebhookVerifier",
    "hmac_b64",
    "hmac_hex",
    "parse_json",
    "parse_time",
    "prefixed",
    "same",
    "verifier_for",
    "within_tolerance",
]

TOLERANCE = timedelta(minutes=5)
EventKind = Literal["created", "updated", "deleted", "merged"]
EVENT_KINDS: tuple[str, ...] = ("created", "updated", "deleted", "merged")


@dataclass(frozen=True)
class WebhookRequest:
    """One delivery as received: `headers` keys lower-cased, `url` the full URI the provider addressed."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    path_token: str | None = None  # a secret segment of the delivery URL, for providers without an HMAC

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class InboundEvent:
    """A provider event normalized to ids: what the `inbound_crm_events` row and triggers see."""

    event_id: str
    event_type: str  # the provider's own type, e.g. contact.creation
    object: str | None  # canonical object (CrmObject value) or None when the type is not a record change
    external_id: str | None
    kind: EventKind
    occurred_at: datetime
    changed_fields: tuple[str, ...] = ()
    account_id: str | None = None  # the provider account (portal, org, site) the event belongs to


@dataclass
class WebhookVerifier(abc.ABC):
    """How one provider's deliveries are verified and normalized.

    `secret` is the tenant's webhook secret blob from the vault (`{"secret": ...}` plus provider extras).
    `verify` must not parse the body before its signature check has passed.
    """

    slug: ClassVar[str]
    # Header that must be present for a delivery to be considered at all (cheap early refusal).
    required_headers: ClassVar[tuple[str, ...]] = ()
    # The body a provider needs as its acknowledgement (content type, bytes); None: a small JSON ack.
    ack: ClassVar[tuple[str, bytes] | None] = None
    # What an operator configures for the tenant: the provider's own secret ("provider"), one we generate and
    # show once ("generated", Standard Webhooks partners), or the provider's account id with a secret path token
    # we generate ("path_token", for a provider that signs nothing).
    secret_kind: ClassVar[str] = "provider"
    # The provider signs with our OAuth app's client secret: a tenant without its own secret uses the app's.
    app_secret_signs: ClassVar[bool] = False
    tolerance: timedelta = field(default=TOLERANCE)
    # For providers whose signature covers no timestamp, the oldest event time accepted (their retry window).
    max_age: timedelta = field(default=TOLERANCE)

    @abc.abstractmethod
    def verify(self, request: WebhookRequest, secret: Mapping[str, Any], now: datetime) -> bool:
        """True when the delivery is authentic and fresh."""

    @abc.abstractmethod
    def events(self, request: WebhookRequest) -> list[InboundEvent]:
        """The verified delivery's events (ValueError on a body that is not the provider's shape)."""

    def probe(self, method: str, query: Mapping[str, str]) -> tuple[int, str] | None:
        """The answer to a subscription-validation probe (HEAD/GET), or None when the provider sends none."""
        return (200, "") if method == "HEAD" else None

    def account_matches(self, event: InboundEvent, settings: Mapping[str, Any]) -> bool:
        """Whether an event's provider account is the tenant's (when the tenant's settings name one)."""
        return True

    @staticmethod
    def key(secret: Mapping[str, Any]) -> str | None:
        """The tenant's signing secret from its blob, or None when it has none."""
        value = secret.get("secret")
        return value if isinstance(value, str) and value else None

    def body_time_fresh(self, body: bytes, field_name: str, now: datetime) -> bool:
        """For signatures without a timestamp: the (already authenticated) body's event time is within
        `max_age` in the past and `tolerance` in the future."""
        try:
            moment = parse_time(parse_json(body).get(field_name))
        except (ValueError, AttributeError):
            return False
        return within_tolerance(moment, now, self.tolerance, self.max_age)


# ---- shared checks ----------------------------------------------------------------------------


def same(expected: str | bytes, given: str | bytes | None) -> bool:
    """Constant-time equality; a missing value is never equal."""
    if given is None:
        return False
    a = expected.encode() if isinstance(expected, str) else expected
    b = given.encode() if isinstance(given, str) else given
    return hmac.compare_digest(a, b)


def hmac_b64(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def hmac_hex(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def within_tolerance(moment: datetime, now: datetime, tolerance: timedelta = TOLERANCE,
                     max_age: timedelta | None = None) -> bool:
    """Not older than `max_age` (default `tolerance`) nor more than `tolerance` in the future."""
    return -tolerance <= now - moment <= (tolerance if max_age is None else max_age)


def prefixed(header: str | None, prefix: str) -> str | None:
    """The value after `prefix` (e.g. `sha256=`) in a signature header, or None when it has another one."""
    if header is None or not header.startswith(prefix):
        return None
    return header[len(prefix):]


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError("body is not JSON") from exc


def parse_time(value: object) -> datetime:
    """An ISO-8601 string (Z or +0000 offsets) or epoch milliseconds, as an aware UTC datetime."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":  # +0000 -> +00:00 (Toast)
            text = f"{text[:-2]}:{text[-2:]}"
        moment = datetime.fromisoformat(text)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    raise ValueError("not a timestamp")


# ---- Standard Webhooks (custom_webhook / generic_rest partners) --------------------------------


@dataclass
class StandardWebhooksVerifier(WebhookVerifier):
    """Standard Webhooks v1: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<b64>` over
    `{id}.{timestamp}.{body}` with the `whsec_` secret; verified by the `standardwebhooks` package's own
    algorithm, with our clock (the package reads the wall clock, which tests cannot steer).

    The partner's body is ours to define: `{"type": "<object>.<kind>", "timestamp": ISO, "data": {"id": ...,
    "object": ..., "changed_fields": [...]}}`; `webhook-id` is the event id.
    """

    slug: ClassVar[str] = "custom_webhook"
    secret_kind: ClassVar[str] = "generated"
    required_headers: ClassVar[tuple[str, ...]] = ("webhook-id", "webhook-timestamp", "webhook-signature")

    def verify(self, request: WebhookRequest, secret: Mapping[str, Any], now: datetime) -> bool:
        msg_id, stamp, signatures = (request.header(h) for h in self.required_headers)
        key = self.key(secret)
        if not (msg_id and stamp and signatures and key) or not stamp.isdigit():
            return False
        if not within_tolerance(datetime.fromtimestamp(int(stamp), UTC), now, self.tolerance):
            return False
        try:
            expected = Webhook(key).sign(msg_id, datetime.fromtimestamp(int(stamp), UTC),
                                         request.body.decode()).partition(",")[2]
        except (UnicodeDecodeError, ValueError, WebhookVerificationError, EmptyWebhookSecretError):
            return False
        # Every space-separated `v1,` entry is tried (secret rotation sends two); other versions are ignored.
        found = False
        for entry in signatures.split(" "):
            version, _, value = entry.partition(",")
            found |= version == "v1" and same(expected, value)
        return found

    def events(self, request: WebhookRequest) -> list[InboundEvent]:
        doc, msg_id = parse_json(request.body), request.header("webhook-id") or ""
        data = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(data, dict) or not isinstance(doc.get("type"), str):
            raise ValueError("not a Standard Webhooks event body")
        obj, _, kind = str(doc["type"]).rpartition(".")
        if kind not in EVENT_KINDS:
            raise ValueError("unknown event kind")
        changed = data.get("changed_fields") or []
        return [InboundEvent(event_id=msg_id, event_type=str(doc["type"]), object=obj or None,
                             external_id=str(data["id"]) if data.get("id") is not None else None,
                             kind=kind,  # type: ignore[arg-type]  # checked against EVENT_KINDS above
                             occurred_at=parse_time(doc.get("timestamp")),
                             changed_fields=tuple(str(name) for name in changed if isinstance(name, str)))]


@dataclass
class GenericRestVerifier(StandardWebhooksVerifier):
    slug: ClassVar[str] = "generic_rest"
    secret_kind: ClassVar[str] = "generated"


def sign_standard(secret: str, msg_id: str, moment: datetime, body: bytes) -> str:
    """The `webhook-signature` header for an outgoing Standard Webhooks delivery (our dialer requests)."""
    return Webhook(secret).sign(msg_id, moment, body.decode())


# ---- lookup ------------------------------------------------------------------------------------

def verifier_for(slug: str) -> WebhookVerifier | None:
    """The verifier for a provider slug, or None when the provider sends no webhooks we accept."""
    from drivers.registry import DRIVERS, get_driver_class  # lazy: drivers import this module

    if slug not in DRIVERS:
        return None
    declared: WebhookVerifier | None = get_driver_class(slug).webhook_verifier
    return declared


def changed_names(values: Sequence[object]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(str(v) for v in values if isinstance(v, str) and v))
