"""Generic REST driver: any JSON REST API, described per tenant by a validated configuration."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx
from jinja2 import TemplateError

from drivers.auth import TokenSet
from drivers.base import (
    BaseDriver,
    CreateResult,
    CrmObject,
    CustomerRecord,
    DeleteResult,
    FieldInfo,
    Record,
    TokenSourceFactory,
    full_name,
    national_digits,
)
from drivers.errors import (
    AuthError,
    ConflictError,
    DriverError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    UnavailableError,
    parse_retry_after,
)
from drivers.generic_rest_auth import auth_for, client_credentials
from drivers.generic_rest_config import ErrorRule, GenericRestForm, ObjectConfig, Request, RestShape
from drivers.generic_rest_pages import collect
from drivers.generic_rest_render import dig, render, render_header, render_path, render_value
from drivers.idempotency import ensure_same_request, provider_key, request_fingerprint
from drivers.notes import append_to_note_record
from drivers.webhooks import GenericRestVerifier

_ACTIONS: dict[str, type[DriverError]] = {"retry": UnavailableError, "rate_limited": RateLimitedError,
                                          "reauth": AuthError, "fail": InvalidRequestError,
                                          "not_found": NotFoundError, "conflict": ConflictError}


class GenericRestDriver(BaseDriver):
    """A tenant-configured REST API (drivers/generic_rest_config.py describes the configuration).

    API version: whatever the tenant's templates target. Auth: none, API key (header or query), bearer, basic, or
    OAuth2 client credentials (`grant_token`, tokens persisted by the vault). Pagination: offset, page, cursor
    (a body path) or RFC 8288 `Link` rel=next, per verb. Rate limits: 429 (or a configured rule) with
    `Retry-After` or a configured header. Idempotent create: `find_by_key` on the configured key field, the
    request fingerprint in `fingerprint_field` (ConflictError on mismatch); without them a create is not
    idempotent at the provider, and the local idempotency ledger is all there is.
    """

    slug = "generic_rest"
    webhook_verifier = GenericRestVerifier()
    supported_objects: ClassVar[frozenset[CrmObject]] = frozenset(CrmObject)  # narrowed per tenant
    credential_form = GenericRestForm
    default_field_catalog: ClassVar[dict[str, str]] = {
        **{f"customer.{k}": k for k in ("first_name", "last_name", "email", "phone", "company", "city")},
        **{f"lead.{k}": k for k in ("first_name", "last_name", "email", "phone", "status", "message")},
        **{f"deal.{k}": k for k in ("name", "amount", "stage", "description")},
        **{f"case.{k}": k for k in ("subject", "description", "status", "priority")},
        "note.body": "body",
    }

    @classmethod
    def build_auth(cls, secret: Mapping[str, Any], config: Mapping[str, Any], tokens: TokenSourceFactory
                   ) -> httpx.Auth:
        return auth_for(cls.slug, secret, tokens)

    @classmethod
    async def grant_token(cls, http: httpx.AsyncClient, secret: Mapping[str, Any], config: Mapping[str, Any],
                          client: tuple[str, str] | None) -> TokenSet:
        """The OAuth2 client-credentials grant (RFC 6749 §4.4) with the tenant's own client."""
        return await client_credentials(cls.slug, http, secret, config)

    def __init__(self, client: httpx.AsyncClient, config: dict[str, Any] | None = None) -> None:
        super().__init__(client, config)
        self.shape = RestShape.model_validate(self.config.get("generic_rest") or {})

    # ----- verbs -------------------------------------------------------------------------------

    async def get_record(self, object: CrmObject, external_id: str) -> Record:
        obj, cfg = self._object(object)
        body = await self.send(cfg, "get", {"id": external_id})
        return self._record(obj, cfg, dig(body, cfg.verbs["get"].record_path))

    async def search_records(self, object: CrmObject, query: str, limit: int = 20) -> list[Record]:
        obj, cfg = self._object(object)
        return [self._record(obj, cfg, r) for r in await collect(self, cfg, "search", {"query": query}, limit)]

    async def create_record(self, object: CrmObject, fields: Mapping[str, Any], idempotency_key: str) -> CreateResult:
        obj, cfg = self._object(object)
        fingerprint, key = request_fingerprint(obj, fields), provider_key(idempotency_key)
        replay = await self._replay(obj, cfg, key, fingerprint)
        if replay is not None:
            return replay
        values = dict(fields) | ({cfg.key_field: key} if cfg.key_field else {})
        values |= {cfg.fingerprint_field: fingerprint} if cfg.fingerprint_field else {}
        try:
            body = await self.send(cfg, "create", {"fields": values, "key": key, "fingerprint": fingerprint})
        except (ConflictError, InvalidRequestError):  # a unique key constraint: a lost earlier create won
            replay = await self._replay(obj, cfg, key, fingerprint)
            if replay is None:
                raise
            return replay
        record = self._record(obj, cfg, dig(body, cfg.verbs["create"].record_path))
        return CreateResult(external_id=record.external_id, record_url=record.url, created=True)

    async def update_record(self, object: CrmObject, external_id: str, fields: Mapping[str, Any]) -> Record | None:
        obj, cfg = self._object(object)
        body = await self.send(cfg, "update", {"id": external_id, "fields": dict(fields)})
        found = dig(body, cfg.verbs["update"].record_path)
        return self._record(obj, cfg, found) if isinstance(found, dict) else None

    async def list_recent(self, object: CrmObject, since: datetime, limit: int = 100) -> list[Record]:
        obj, cfg = self._object(object)
        request = cfg.verbs.get("list_recent")
        fmt = request.since_format if request else "iso"
        moment = since.astimezone(UTC)
        stamp: Any = {"iso": moment.isoformat(), "epoch": int(moment.timestamp()),
                      "epoch_ms": int(moment.timestamp() * 1000)}[fmt]
        rows = await collect(self, cfg, "list_recent", {"since": stamp}, limit)
        return [self._record(obj, cfg, r) for r in rows]

    async def delete_record(self, object: CrmObject, external_id: str, *, hard: bool = False) -> DeleteResult:
        obj, cfg = self._object(object)
        await self.send(cfg, "delete", {"id": external_id, "hard": hard})
        return DeleteResult(deleted=True, hard_deleted=cfg.hard_delete)

    async def describe_schema(self, object: CrmObject) -> list[FieldInfo]:
        """From the tenant's OpenAPI document (`openapi_url`, `schema_name` per object), read live."""
        obj, cfg = self._object(object)
        if not self.shape.openapi_url or not cfg.schema_name:
            raise InvalidRequestError("no OpenAPI document configured for this object", provider=self.slug,
                                      provider_code="not_supported")
        document = self._json("GET", await self._request("GET", self.shape.openapi_url))
        schema = dig(document, f"components.schemas.{cfg.schema_name}") or dig(
            document, f"definitions.{cfg.schema_name}") or {}
        required = set(schema.get("required") or [])
        return [FieldInfo(name=name, label=str(spec.get("title") or name), type=str(spec.get("type") or "string"),
                          required=name in required, read_only=bool(spec.get("readOnly")))
                for name, spec in (schema.get("properties") or {}).items()]

    async def append_note(
        self, customer_external_id: str, note_external_id: str | None, text: str, *, batch_key: str
    ) -> CreateResult:
        return await append_to_note_record(self, customer_external_id, note_external_id, text, batch_key=batch_key)

    # ----- provider hooks ----------------------------------------------------------------------

    async def _probe(self) -> None:
        await self.send(None, "test", {})

    async def _find_customer_by_phone(self, e164: str) -> CustomerRecord | None:
        cfg = self._object(CrmObject.CUSTOMER)[1]
        for raw in await self._optional(cfg, "lookup_phone", {"phone": e164, "digits": national_digits(e164)}):
            found = self._customer(cfg, raw)
            if self._same_phone(e164, *(found.fields.get(f) for f in cfg.phone_fields)):
                return found
        return None

    async def _find_customer_by_email(self, email: str) -> CustomerRecord | None:
        cfg = self._object(CrmObject.CUSTOMER)[1]
        for raw in await self._optional(cfg, "lookup_email", {"email": email}):
            found = self._customer(cfg, raw)
            if str(found.fields.get(cfg.email_field) or "").lower() == email.lower():
                return found
        return None

    async def _get_customer(self, external_id: str) -> CustomerRecord:
        cfg = self._object(CrmObject.CUSTOMER)[1]
        return self._customer(cfg, dig(await self.send(cfg, "get", {"id": external_id}), cfg.verbs["get"].record_path))

    def _provider_code(self, response: httpx.Response) -> str | None:
        code = dig(response.json(), self.shape.error_code_path)
        return str(code)[:64] if isinstance(code, str | int) and not isinstance(code, bool) else None

    def _classify(self, response: httpx.Response, provider_code: str | None) -> type[DriverError] | None:
        rule = self._rule(response)
        return _ACTIONS[rule.action] if rule else None

    def _retry_after(self, response: httpx.Response) -> timedelta | None:
        rule = self._rule(response)
        if rule and rule.retry_after_header:
            return parse_retry_after(response.headers.get(rule.retry_after_header))
        return super()._retry_after(response)

    # ----- requests ----------------------------------------------------------------------------

    async def send(self, cfg: ObjectConfig | None, verb: str, context: dict[str, Any], *,
                   extra_query: dict[str, Any] | None = None, url: str | None = None) -> Any:
        """Render and send one verb's request; the decoded answer (public for drivers.generic_rest_pages)."""
        return self._json("GET", await self.send_raw(cfg, verb, context, extra_query=extra_query, url=url))

    async def send_raw(self, cfg: ObjectConfig | None, verb: str, context: dict[str, Any], *,
                       extra_query: dict[str, Any] | None = None, url: str | None = None) -> httpx.Response:
        request = self.shape.test if cfg is None else self._verb(cfg, verb)
        try:
            target = url or render_path(request.path, context)
            query = {k: render(v, context) for k, v in request.query.items()} | (extra_query or {})
            headers = {k: render_header(v, context) for k, v in request.headers.items()}
            body = render_value(request.body, context) if request.body is not None else None
        except (TemplateError, ValueError, TypeError) as exc:  # the message may quote values: keep the type
            raise InvalidRequestError(f"the {verb} template failed ({type(exc).__name__})", provider=self.slug,
                                      provider_code="template") from None
        response = await self._request(request.method, target, params=None if url else query, headers=headers,
                                       json=body)
        rule = self._rule(response) if response.status_code < 300 else None
        if rule is not None:  # an API that reports failures inside a 2xx body
            raise _ACTIONS[rule.action](f"{verb} answered an error body", provider=self.slug,
                                        status_code=response.status_code, retry_after=self._retry_after(response))
        return response

    def _verb(self, cfg: ObjectConfig, verb: str) -> Request:
        request = cfg.verbs.get(verb)  # type: ignore[call-overload]
        if request is None or request.not_supported:
            raise InvalidRequestError(f"{verb} is not supported by this connection", provider=self.slug,
                                      provider_code="not_supported")
        return request  # type: ignore[no-any-return]

    async def _optional(self, cfg: ObjectConfig, verb: str, context: dict[str, Any]) -> list[Any]:
        request = cfg.verbs.get(verb)  # type: ignore[call-overload]
        if request is None or request.not_supported:  # a lookup this API cannot do finds nothing
            return []
        return await collect(self, cfg, verb, context, 10)

    def _rule(self, response: httpx.Response) -> ErrorRule | None:
        for rule in self.shape.errors:
            if rule.status and response.status_code not in rule.status:
                continue
            if not rule.status and response.status_code < 400 and not rule.body_contains:
                continue
            if rule.body_contains and rule.body_contains not in response.text:
                continue
            return rule
        return None

    async def _replay(self, obj: CrmObject, cfg: ObjectConfig, key: str, fingerprint: str) -> CreateResult | None:
        if "find_by_key" not in cfg.verbs or not cfg.key_field:
            return None
        found = await collect(self, cfg, "find_by_key", {"key": key}, 1)
        if not found:
            return None
        record = self._record(obj, cfg, found[0])
        if record.fields.get(cfg.key_field) != key:  # a search that matched loosely is not our record
            return None
        stored = record.fields.get(cfg.fingerprint_field) if cfg.fingerprint_field else None
        ensure_same_request(self.slug, str(stored) if stored else None, fingerprint, record.external_id)
        return CreateResult(external_id=record.external_id, record_url=record.url, created=False)

    def _object(self, object: CrmObject | str) -> tuple[CrmObject, ObjectConfig]:
        obj = self._require(object)
        cfg = self.shape.objects.get(obj.value)
        if cfg is None:
            raise InvalidRequestError(f"object {obj.value} is not configured", provider=self.slug)
        return obj, cfg

    def _record(self, obj: CrmObject, cfg: ObjectConfig, raw: Any) -> Record:
        if not isinstance(raw, dict):
            raise UnavailableError("the answer holds no record where the configuration says", provider=self.slug)
        fields = dig(raw, cfg.fields_path)
        fields = dict(fields) if isinstance(fields, dict) else {}
        updated = dig(raw, cfg.updated_path) if cfg.updated_path else None
        updated = updated if updated is not None or not cfg.updated_path else dig(fields, cfg.updated_path)
        record_id = str(dig(raw, cfg.id_path))
        url = raw.get("url") if isinstance(raw.get("url"), str) else None
        if url is None and cfg.record_url:
            url = render_path(cfg.record_url, {"id": record_id}) if "{{" in cfg.record_url else cfg.record_url
        return Record(object=obj, external_id=record_id, fields=fields, url=url, updated_at=_moment(updated))

    def _customer(self, cfg: ObjectConfig, raw: Any) -> CustomerRecord:
        record = self._record(CrmObject.CUSTOMER, cfg, raw)
        fields = record.fields
        phone = next((str(fields[f]) for f in cfg.phone_fields if fields.get(f)), None)
        return CustomerRecord(external_id=record.external_id, name=full_name(*(fields.get(f) for f in cfg.name_fields)),
                              phone=phone, email=fields.get(cfg.email_field), fields=fields, url=record.url)


def _moment(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000 if value > 10**11 else value, tz=UTC)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None
