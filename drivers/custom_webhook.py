"""Custom webhook driver: every verb is a Standard-Webhooks-signed JSON POST to the tenant's own endpoint.

For any CRM without a native driver (and OpenTable, whose API is partnership-only): the tenant's side implements
one HTTPS endpoint answering the events documented in docs/custom_webhook.md.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Callable, Generator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
from pydantic import Field, PrivateAttr, SecretStr, field_validator

from drivers.auth import json_or_empty
from drivers.base import (
    BaseDriver,
    CreateResult,
    CrmObject,
    CustomerRecord,
    DeleteResult,
    FieldInfo,
    Record,
)
from drivers.errors import AuthError, ConflictError, DriverError, InvalidRequestError, NotFoundError
from drivers.idempotency import request_fingerprint
from drivers.notes import append_to_note_record
from drivers.provider import CredentialForm
from drivers.webhook_signing import new_secret, signature_header
from drivers.webhooks import StandardWebhooksVerifier

ROTATION_OVERLAP = timedelta(hours=24)
_WHSEC = re.compile(r"whsec_[A-Za-z0-9+/]{32,88}={0,2}")  # both secrets sign this long after a rotation


class StandardWebhookAuth(httpx.Auth):
    """Signs each request: `webhook-id` (kept when the driver set one), `webhook-timestamp` (this attempt) and
    `webhook-signature` (one `v1` entry per active secret: two during a rotation's overlap)."""

    requires_request_body = True

    def __init__(self, secrets: list[str], clock: Callable[[], float] = time.time) -> None:
        if not secrets:
            raise ValueError("no signing secret")
        self._secrets, self._clock = secrets, clock

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        msg_id = request.headers.get("webhook-id") or f"msg_{uuid.uuid4().hex}"
        timestamp = int(self._clock())
        request.headers["webhook-id"] = msg_id
        request.headers["webhook-timestamp"] = str(timestamp)
        request.headers["webhook-signature"] = signature_header(self._secrets, msg_id, timestamp, request.content)
        yield request


class CustomWebhookForm(CredentialForm):
    """The tenant's endpoint. The signing secret is generated here and shown once (`reveal()`), unless the
    operator brings one (`whsec_…`, e.g. when re-connecting an endpoint that already holds it)."""

    endpoint_url: str = Field(pattern=r"^https?://[^\s/?#]+(/[^\s#]*)?$", max_length=2048)
    signing_secret: SecretStr | None = None
    _generated: str | None = PrivateAttr(default=None)

    @field_validator("signing_secret")
    @classmethod
    def _whsec(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _WHSEC.fullmatch(value.get_secret_value()):
            raise ValueError("a signing secret is whsec_ followed by the base64 of 24 to 64 bytes")
        return value

    def model_post_init(self, context: Any) -> None:
        if self.signing_secret is None:
            self._generated = new_secret()

    def reveal(self) -> str | None:
        """The secret this form generated, to show the operator once (None when they brought their own)."""
        return self._generated

    def secret(self) -> dict[str, Any]:
        current = self.signing_secret.get_secret_value() if self.signing_secret else self._generated
        return {"auth": "webhook", "signing_secrets": [current]}

    def settings(self) -> dict[str, Any]:
        return {"endpoint_url": self.endpoint_url}


def rotate_signing_secret(blob: Mapping[str, Any], *, now: datetime | None = None,
                          overlap: timedelta = ROTATION_OVERLAP) -> tuple[dict[str, Any], str]:
    """A new current secret; the previous one keeps signing until `overlap` has passed. (new blob, new secret)."""
    fresh = new_secret()
    previous = list(blob.get("signing_secrets") or [])[:1]
    until = ((now or datetime.now(UTC)) + overlap).isoformat()
    return {**blob, "signing_secrets": [fresh, *previous], "previous_until": until}, fresh


def active_secrets(blob: Mapping[str, Any], now: datetime | None = None) -> list[str]:
    """The secrets that sign now: the current one, plus the previous one while its overlap lasts."""
    secrets = [str(s) for s in blob.get("signing_secrets") or [] if s]
    until = blob.get("previous_until")
    if len(secrets) > 1 and until and datetime.fromisoformat(str(until)) <= (now or datetime.now(UTC)):
        secrets = secrets[:1]
    return secrets


class CustomWebhookDriver(BaseDriver):
    """The tenant's own endpoint, per the contract in docs/custom_webhook.md.

    API version: contract v1 (`{"type": "<event>", "timestamp", "data"}` POSTed to `endpoint_url`). Auth: Standard
    Webhooks signatures (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`), tenant
    secret `whsec_…`, two signatures during a rotation. Reads are POSTs too: lookups carry phones and emails,
    which must not land in URLs and access logs. Pagination: `next_cursor` in `record.list_recent` answers.
    Rate limits: the receiver's 429 with `Retry-After`. Redirects are never followed (3xx is an error).
    Idempotent create: `webhook-id` is `msg_` + a digest of our idempotency key (the receiver's dedupe key), and
    `data.fingerprint` lets it answer 409 for the same key with other fields.
    """

    slug = "custom_webhook"
    webhook_verifier = StandardWebhooksVerifier()  # the partner signs what it sends us the same way
    supported_objects: ClassVar[frozenset[CrmObject]] = frozenset(CrmObject)
    hard_delete_supported = True
    credential_form = CustomWebhookForm
    default_field_catalog: ClassVar[dict[str, str]] = {
        **{f"customer.{k}": k for k in ("first_name", "last_name", "email", "phone", "company", "city")},
        **{f"lead.{k}": k for k in ("first_name", "last_name", "email", "phone", "status", "message")},
        **{f"deal.{k}": k for k in ("name", "amount", "stage", "description")},
        **{f"case.{k}": k for k in ("subject", "description", "status", "priority")},
        **{f"appointment.{k}": k for k in ("title", "starts_at", "duration_minutes")},
        "note.body": "body",
    }

    @classmethod
    def api_base_url(cls, config: Mapping[str, Any] | None = None) -> str:
        return str((config or {}).get("endpoint_url") or "")

    @classmethod
    def build_auth(cls, secret: Mapping[str, Any], config: Mapping[str, Any], tokens: Any) -> httpx.Auth:
        secrets = active_secrets(secret)
        if not secrets:
            raise AuthError("the stored credential has no signing secret", provider=cls.slug)
        return StandardWebhookAuth(secrets)

    # ----- verbs -------------------------------------------------------------------------------

    async def get_record(self, object: CrmObject, external_id: str) -> Record:
        obj = self._require(object)
        body = await self._event("record.get", {"object": obj.value, "id": external_id})
        return self._record(obj, body["record"])

    async def search_records(self, object: CrmObject, query: str, limit: int = 20) -> list[Record]:
        obj = self._require(object)
        body = await self._event("record.search", {"object": obj.value, "query": query, "limit": limit})
        return [self._record(obj, r) for r in body.get("records") or []][:limit]

    async def create_record(self, object: CrmObject, fields: Mapping[str, Any], idempotency_key: str) -> CreateResult:
        obj = self._require(object)
        data = {"object": obj.value, "fields": dict(fields), "idempotency_key": idempotency_key,
                "fingerprint": request_fingerprint(obj, fields)}
        body = await self._event("record.create", data, msg_id=self._msg_id(idempotency_key))
        return CreateResult(external_id=str(body["id"]), record_url=body.get("url"), created=bool(body.get("created")))

    async def update_record(self, object: CrmObject, external_id: str, fields: Mapping[str, Any]) -> Record | None:
        obj = self._require(object)
        body = await self._event("record.update", {"object": obj.value, "id": external_id, "fields": dict(fields)})
        return self._record(obj, body["record"]) if body and body.get("record") else None

    async def list_recent(self, object: CrmObject, since: datetime, limit: int = 100) -> list[Record]:
        obj = self._require(object)
        out: list[Record] = []
        cursor: str | None = None
        while len(out) < limit:
            data = {"object": obj.value, "since": since.astimezone(UTC).isoformat(), "limit": limit - len(out),
                    "cursor": cursor}
            body = await self._event("record.list_recent", data)
            out.extend(self._record(obj, r) for r in body.get("records") or [])
            cursor = body.get("next_cursor")
            if not cursor:
                break
        return out[:limit]

    async def delete_record(self, object: CrmObject, external_id: str, *, hard: bool = False) -> DeleteResult:
        obj = self._require(object)
        body = await self._event("record.delete", {"object": obj.value, "id": external_id, "hard": hard})
        return DeleteResult(deleted=bool(body.get("deleted")), hard_deleted=bool(body.get("hard_deleted")))

    async def describe_schema(self, object: CrmObject) -> list[FieldInfo]:
        obj = self._require(object)
        body = await self._event("schema.describe", {"object": obj.value})
        return [FieldInfo(name=f["name"], label=f.get("label") or f["name"], type=f.get("type") or "string",
                          required=bool(f.get("required")), read_only=bool(f.get("read_only")))
                for f in body.get("fields") or []]

    async def append_note(
        self, customer_external_id: str, note_external_id: str | None, text: str, *, batch_key: str
    ) -> CreateResult:
        return await append_to_note_record(self, customer_external_id, note_external_id, text, batch_key=batch_key)

    # ----- provider hooks ----------------------------------------------------------------------

    async def _probe(self) -> None:
        await self._event("connection.test", {})

    async def _find_customer_by_phone(self, e164: str) -> CustomerRecord | None:
        found = await self._lookup({"phone": e164})
        return found if found is not None and self._same_phone(e164, found.phone) else None

    async def _find_customer_by_email(self, email: str) -> CustomerRecord | None:
        return await self._lookup({"email": email})

    async def _get_customer(self, external_id: str) -> CustomerRecord:
        found = await self._lookup({"external_id": external_id})
        if found is None:
            raise NotFoundError("no such customer", provider=self.slug, status_code=404)
        return found

    def _provider_code(self, response: httpx.Response) -> str | None:
        body = response.json()
        code = body.get("error") if isinstance(body, dict) else None
        return str(code)[:64] if code else None

    def _error_for(self, method: str, response: httpx.Response) -> DriverError:
        error = super()._error_for(method, response)
        if isinstance(error, ConflictError):  # the receiver names the record that holds the key (see the contract)
            body = json_or_empty(response)
            error.existing_id = str(body["id"]) if body.get("id") is not None else None
        return error

    def _classify(self, response: httpx.Response, provider_code: str | None) -> type[AuthError] | None:
        return AuthError if response.status_code == 410 else None  # 410: the receiver disabled this endpoint

    # ----- helpers -----------------------------------------------------------------------------

    async def _event(self, event: str, data: dict[str, Any], *, msg_id: str | None = None) -> Any:
        payload = {"type": event, "timestamp": datetime.now(UTC).isoformat(), "data": data}
        # The endpoint itself, not base_url + "": httpx would append a "/" the receiver may not route.
        url = self.api_base_url(self.config)
        response = await self._request("POST", url, json=payload, headers={"webhook-id": msg_id} if msg_id else {})
        if 300 <= response.status_code < 400:  # never followed: the hop was not checked at connect time
            raise InvalidRequestError("the endpoint redirected", provider=self.slug,
                                      status_code=response.status_code, provider_code="redirect")
        return self._json("POST", response) or {}

    async def _lookup(self, data: dict[str, Any]) -> CustomerRecord | None:
        customer = (await self._event("customer.lookup", data)).get("customer")
        if not customer:
            return None
        fields = dict(customer.get("fields") or {})
        return CustomerRecord(external_id=str(customer["id"]), name=customer.get("name"), phone=customer.get("phone"),
                              email=customer.get("email"), fields=fields, url=customer.get("url"))

    def _msg_id(self, idempotency_key: str) -> str:
        # The same create always has the same webhook-id (the receiver's dedupe key); a digest, never the key.
        return "msg_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]

    def _record(self, obj: CrmObject, body: Mapping[str, Any]) -> Record:
        stamp = body.get("updated_at")
        return Record(object=obj, external_id=str(body["id"]), fields=dict(body.get("fields") or {}),
                      url=body.get("url"), updated_at=datetime.fromisoformat(stamp) if stamp else None)
