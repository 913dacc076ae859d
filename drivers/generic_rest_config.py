"""The generic REST connector's per-tenant configuration: auth, per-verb request templates, pagination, error rules.

Vocabulary after Fides' per-verb SaaS requests and Airbyte's authenticators/paginators/error filters (read, not
copied). Validated as a whole: pydantic lists every structural problem at once, and `_templates_compile` adds
every template that does not compile, so an operator fixes the config in one round (the connect route answers
422 with the list). Secrets (keys, tokens, passwords, client secrets) go to the vault blob; the rest becomes
tenant settings.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from jinja2 import TemplateSyntaxError
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from drivers.generic_rest_render import ENV
from drivers.provider import CredentialForm

Url = Annotated[str, Field(pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$", max_length=2048)]
Verb = Literal["get", "search", "create", "update", "delete", "list_recent", "lookup_phone", "lookup_email",
               "find_by_key"]
ObjectName = Literal["customer", "lead", "deal", "case", "appointment", "note"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoAuth(_Strict):
    type: Literal["none"]


class ApiKeyAuth(_Strict):
    type: Literal["api_key"]
    key: SecretStr = Field(min_length=1, max_length=1024)
    placement: Literal["header", "query"] = "header"
    name: str = Field(default="X-Api-Key", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    prefix: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,32}$")


class BearerAuth(_Strict):
    type: Literal["bearer"]
    token: SecretStr = Field(min_length=1, max_length=4096)


class BasicAuth(_Strict):
    type: Literal["basic"]
    username: str = Field(min_length=1, max_length=256)
    password: SecretStr = Field(max_length=1024)


class ClientCredentialsAuth(_Strict):
    type: Literal["oauth2_client_credentials"]
    token_url: Url
    client_id: str = Field(min_length=1, max_length=512)
    client_secret: SecretStr = Field(min_length=1, max_length=1024)
    scope: str | None = Field(default=None, max_length=1024)
    client_auth: Literal["basic", "body"] = "basic"  # RFC 6749 §2.3.1: HTTP Basic is the one servers must support


Auth = Annotated[NoAuth | ApiKeyAuth | BearerAuth | BasicAuth | ClientCredentialsAuth, Field(discriminator="type")]


class Pagination(_Strict):
    """offset: `offset_param`+`limit_param`; page: `page_param` (from `start`)+`limit_param`; cursor: the next cursor
    at `cursor_path` in the body, sent as `cursor_param`; link: the RFC 8288 `Link: <…>; rel="next"` header."""

    type: Literal["offset", "page", "cursor", "link"]
    limit_param: str = "limit"
    page_size: int = Field(default=100, ge=1, le=1000)
    offset_param: str = "offset"
    page_param: str = "page"
    start: int = Field(default=1, ge=0)
    cursor_param: str = "cursor"
    cursor_path: str = "next_cursor"


class Request(_Strict):
    """One verb's request. Strings are Jinja templates (sandboxed) over: fields, id, query, limit, since, email,
    phone, key, fingerprint. A body string that is exactly `{{ expr }}` keeps the expression's value (e.g. a
    dict of fields); path values are URL-quoted; rendered header values may not contain CR or LF."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    path: str = Field(min_length=1, max_length=1024)
    query: dict[str, str] = {}
    headers: dict[str, str] = {}
    body: Any = None
    records_path: str | None = None  # where the list of records is in the answer ("" = the answer itself)
    record_path: str | None = None  # where the one record is ("" = the answer itself)
    pagination: Pagination | None = None
    since_param: str | None = None
    since_format: Literal["iso", "epoch", "epoch_ms"] = "iso"
    not_supported: bool = False

    def templates(self) -> list[str]:
        def strings(value: Any) -> list[str]:
            if isinstance(value, str):
                return [value]
            if isinstance(value, dict):
                return [s for v in value.values() for s in strings(v)]
            if isinstance(value, list):
                return [s for v in value for s in strings(v)]
            return []

        return [self.path, *self.query.values(), *self.headers.values(), *strings(self.body)]


class ObjectConfig(_Strict):
    verbs: dict[Verb, Request]
    id_path: str = "id"
    fields_path: str = ""  # where a record's fields are inside it ("" = the record itself)
    updated_path: str | None = "updated_at"
    key_field: str | None = None  # the field that stores our idempotency key (find_by_key searches it)
    fingerprint_field: str | None = None
    name_fields: tuple[str, ...] = ("first_name", "last_name")
    phone_fields: tuple[str, ...] = ("phone",)
    email_field: str = "email"
    schema_name: str | None = None  # components.schemas entry of the OpenAPI document, for describe_schema
    hard_delete: bool = False  # whether the API's DELETE erases (True) or archives
    record_url: str | None = Field(default=None, max_length=1024)  # template over `id`: the record in the CRM's UI


class ErrorRule(_Strict):
    """Matched in order against error answers (and 2xx answers when `body_contains` is set)."""

    status: tuple[int, ...] = ()
    body_contains: str | None = Field(default=None, max_length=256)
    action: Literal["retry", "rate_limited", "reauth", "fail", "not_found", "conflict"]
    retry_after_header: str | None = None  # e.g. X-RateLimit-Reset (seconds)


class RestShape(_Strict):
    """Everything but the auth: what the tenant's settings keep (`settings["generic_rest"]`)."""

    base_url: Url
    objects: dict[ObjectName, ObjectConfig] = Field(min_length=1)
    test: Request
    errors: tuple[ErrorRule, ...] = ()
    openapi_url: Url | None = None
    error_code_path: str | None = "error"  # where an error answer's machine code is (never its message)

    @model_validator(mode="after")
    def _templates_compile(self) -> RestShape:
        problems = []
        requests = [("test", self.test)] + [(f"objects.{o}.verbs.{v}", r) for o, c in self.objects.items()
                                           for v, r in c.verbs.items()]
        for where, request in requests:
            for template in request.templates():
                try:
                    ENV.parse(template)
                except TemplateSyntaxError as exc:
                    problems.append(f"{where}: template does not compile ({exc.message})")
        for name, obj in self.objects.items():
            try:
                ENV.parse(obj.record_url or "")
            except TemplateSyntaxError as exc:
                problems.append(f"objects.{name}.record_url: template does not compile ({exc.message})")
            if "find_by_key" in obj.verbs and not obj.key_field:
                problems.append(f"objects.{name}: find_by_key needs key_field")
            if obj.verbs.get("list_recent") and obj.verbs["list_recent"].since_param is None and not (
                    obj.verbs["list_recent"].not_supported):
                problems.append(f"objects.{name}.verbs.list_recent: since_param is required")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class GenericRestForm(RestShape, CredentialForm):
    """What an operator posts to connect a generic REST API: the whole configuration (secrets included)."""

    auth: Auth

    def secret(self) -> dict[str, Any]:
        auth = self.auth.model_dump(mode="python")
        return {"auth": "generic", "auth_config": {k: v.get_secret_value() if isinstance(v, SecretStr) else v
                                                   for k, v in auth.items()}}

    def settings(self) -> dict[str, Any]:
        config = self.model_dump(mode="json", exclude={"auth"})
        token_url = self.auth.token_url if isinstance(self.auth, ClientCredentialsAuth) else None
        return {"base_url": self.base_url, "generic_rest": config} | ({"token_url": token_url} if token_url else {})
