"""The driver contract: canonical objects, record models and the async verbs every CRM driver implements.

A driver receives a ready `httpx.AsyncClient` (base_url, auth, timeouts, transport are the caller's) and
never sleeps or retries: Temporal owns retries and reads `DriverError.retryable` / `retry_after`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from drivers.auth import ApiKeyAuth, BearerAuth, OAuth2Auth, OAuthTokenSource, TokenSet, TokenSource
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
from drivers.models import (
    ConnectionCheck,
    CreateResult,
    CrmObject,
    CustomerRecord,
    DeleteResult,
    FieldInfo,
    MatchItem,
    Record,
    UpsertItem,
    UpsertOutcome,
)
from drivers.provider import CredentialForm, OAuthApp, RateLimit
from drivers.text import appended, batch_marker, full_name, national_digits, normalize_phone, phone_formats, region_of
from drivers.transport import OutboundRefusedError

if TYPE_CHECKING:
    from drivers.webhooks import WebhookVerifier

__all__ = [
    "BaseDriver",
    "ConnectionCheck",
    "CreateResult",
    "CrmObject",
    "CustomerRecord",
    "DeleteResult",
    "FieldInfo",
    "MatchItem",
    "Record",
    "UpsertItem",
    "UpsertOutcome",
    "appended",
    "batch_marker",
    "full_name",
    "national_digits",
    "normalize_phone",
    "phone_formats",
]

TokenSourceFactory = Callable[[], TokenSource]


def auth_kind(secret: Mapping[str, Any]) -> str:
    """`oauth2` | `token` | `bearer` | `api_key`: stated by the blob, else inferred from what it holds."""
    kind = secret.get("auth")
    if kind:
        return str(kind)
    if secret.get("refresh_token"):
        return "oauth2"
    return "bearer" if secret.get("access_token") else "api_key"


_STATUS_ERRORS: dict[int, type[DriverError]] = {
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitedError,
    408: UnavailableError,
}


class BaseDriver(abc.ABC):
    """Base of every CRM driver. Subclasses set the ClassVars and implement the abstract verbs.

    `config` carries per-tenant provider settings (e.g. Salesforce `instance_url`, `api_version`,
    `idempotency_field`; `default_region` for phone parsing: the tenant's, set at tenant creation, default US).
    """

    slug: ClassVar[str]
    base_url: ClassVar[str] = ""
    supported_objects: ClassVar[frozenset[CrmObject]]
    default_field_catalog: ClassVar[dict[str, str]]
    hard_delete_supported: ClassVar[bool] = False
    # Objects delete_record can remove; None: every supported object. The others raise DeleteUnsupportedError
    # (the provider has no delete), which erasure records as a divergence for the operator.
    deletable_objects: ClassVar[frozenset[CrmObject] | None] = None
    # The provider's "lead" is the person's own contact record in a lifecycle stage (HubSpot), not a record of
    # its own: a lead of a known customer updates that customer's record instead of creating another.
    leads_are_contacts: ClassVar[bool] = False
    token_url: ClassVar[str | None] = None  # OAuth token endpoint; None when the provider has no OAuth
    # Provider facts (drivers/provider.py): read by the vault, the connect flow, the budget and the console.
    oauth: ClassVar[OAuthApp | None] = None  # authorization-code connect; None: connected by form only
    credential_form: ClassVar[type[CredentialForm] | None] = None  # posted credentials; None: OAuth only
    rate_limits: ClassVar[tuple[RateLimit, ...]] = ()
    # Inbound webhooks (drivers/webhooks.py): how this provider's deliveries are verified and normalized.
    webhook_verifier: ClassVar[WebhookVerifier | None] = None
    batch_size: ClassVar[int] = 1  # records per call of the provider's batch API (1: no batch API)
    match_size: ClassVar[int] = 1  # customers per match_customers call (1: no batch lookup, matched one by one)
    auth_scheme: ClassVar[str] = "Bearer"  # the Authorization scheme for issued tokens (Zoho: Zoho-oauthtoken)
    # Provider fields our installer adds for idempotent create (config "idempotency_field"/"fingerprint_field").
    idempotency_field: ClassVar[str] = "crm_sor_idempotency_key"
    fingerprint_field: ClassVar[str] = "crm_sor_fingerprint"
    # The config key listing extra provider fields reads return (`{object: [names]}`); the field mapping adds the
    # tenant's mapped custom fields to it (read_also). None: the provider's reads return every field anyway.
    extra_fields_key: ClassVar[str | None] = None
    # Objects whose exactly-once create keeps our key and fingerprint in those custom fields (drivers/installer.py
    # makes sure they exist); empty: the provider's own mechanism needs no field of ours.
    keyed_objects: ClassVar[frozenset[CrmObject]] = frozenset()

    @classmethod
    def api_base_url(cls, config: Mapping[str, Any] | None = None) -> str:
        """The base_url the injected client needs for this tenant (`config["base_url"]` overrides)."""
        return str((config or {}).get("base_url") or cls.base_url)

    @classmethod
    def oauth_token_url(cls, config: Mapping[str, Any] | None = None) -> str | None:
        """The token endpoint for this tenant (`config["token_url"]` overrides, e.g. a sandbox)."""
        return (config or {}).get("token_url") or cls.token_url

    @classmethod
    def oauth_start_settings(cls, *, sandbox: bool | None) -> dict[str, Any]:
        """Tenant settings the operator's OAuth start sets (default: `is_sandbox` where the provider has a
        separate consent host for sandbox accounts)."""
        if sandbox is None or cls.oauth is None or not cls.oauth.sandbox_authorize_url:
            return {}
        return {"is_sandbox": sandbox}

    @classmethod
    def oauth_authorize_url(cls, config: Mapping[str, Any]) -> str:
        """The consent page for this tenant (`config["authorize_url"]` overrides, e.g. a dev sandbox)."""
        if cls.oauth is None:
            raise InvalidRequestError("the provider has no OAuth connect flow", provider=cls.slug)
        if config.get("authorize_url"):
            return str(config["authorize_url"])
        if config.get("is_sandbox") and cls.oauth.sandbox_authorize_url:
            return cls.oauth.sandbox_authorize_url
        return cls.oauth.authorize_url

    @classmethod
    def oauth_callback_settings(cls, query: Mapping[str, str]) -> dict[str, Any]:
        """Tenant settings the provider's redirect back to us carries besides code and state (e.g. which data
        centre the account lives in); merged before the code exchange. Raise InvalidRequestError on a value
        that must not be trusted. Default: none."""
        return {}

    @classmethod
    def settings_from_tokens(cls, tokens: TokenSet) -> dict[str, Any]:
        """Non-secret tenant settings a token response decides (e.g. the API host); merged on connect."""
        return {}

    @classmethod
    def build_auth(cls, secret: Mapping[str, Any], config: Mapping[str, Any], tokens: TokenSourceFactory
                   ) -> httpx.Auth:
        """The httpx auth flow for a stored credential blob.

        The default understands the blob's `auth`: `oauth2` (a refreshing token source), `bearer` and
        `api_key`. A provider whose tokens are issued by another grant (client credentials, a user-token
        login) overrides `grant_token` and keeps this; one with extra headers (API key + token) overrides
        this too. `tokens()` gives the vault's persistent, single-flight token source for this credential.
        """
        kind = auth_kind(secret)
        if kind in ("oauth2", "token"):
            return OAuth2Auth(tokens(), scheme=str(config.get("auth_scheme", cls.auth_scheme)))
        if kind == "bearer" and secret.get("access_token"):
            return BearerAuth(str(secret["access_token"]))
        if kind == "api_key" and secret.get("api_key"):
            return ApiKeyAuth(str(secret["api_key"]), header=str(config.get("api_key_header", "Authorization")),
                              prefix=config.get("api_key_prefix"), query_param=config.get("api_key_query_param"))
        raise AuthError(f"the stored credential has no usable {kind} secret", provider=cls.slug)

    @classmethod
    async def grant_token(cls, http: httpx.AsyncClient, secret: Mapping[str, Any], config: Mapping[str, Any],
                          client: tuple[str, str] | None) -> TokenSet:
        """Get a new access token for a stored credential (the vault persists it, single-flight).

        Default: the OAuth refresh-token grant at `oauth_token_url(config)` with our app's `client`
        (id, secret). Client-credentials and login providers override it and read their blob instead. A
        refused grant raises AuthError (a human must reconnect); an unreachable endpoint UnavailableError.
        """
        token_url = cls.oauth_token_url(config)
        if not token_url:
            raise AuthError("the provider has no OAuth token endpoint", provider=cls.slug)
        if client is None:
            raise AuthError("no OAuth client configured to refresh this connection", provider=cls.slug)
        issued: list[TokenSet] = []

        async def keep(tokens: TokenSet) -> None:
            issued.append(tokens)

        one_shot = OAuthTokenSource(token_url=token_url, client_id=client[0], client_secret=client[1],
                                    refresh_token=str(secret.get("refresh_token") or ""), provider=cls.slug,
                                    http=http, on_rotate=keep)
        await one_shot.refreshed("")
        return issued[0]

    def phone_of(self, object: CrmObject, fields: Mapping[str, Any]) -> str | None:
        """A record's phone, read from the provider fields this driver maps `<object>.phone` and
        `<object>.mobile_phone` to."""
        names = (self.default_field_catalog.get(f"{object.value}.{key}") for key in ("phone", "mobile_phone"))
        return next((str(fields[name]) for name in names if name and fields.get(name)), None)

    def time_zone_of(self, fields: Mapping[str, Any]) -> str | None:
        """A record's IANA time zone when the provider keeps one; None: callers fall back to the phone's region.

        Default: a `timezone`/`time_zone` field (generic REST and webhook partners); providers with their own field
        or spelling override it.
        """
        value = next((fields[name] for name in ("timezone", "time_zone") if fields.get(name)), None)
        return value if isinstance(value, str) else None

    @classmethod
    def budget_scope(cls, request: httpx.Request) -> str:
        """Which of the declared `rate_limits` scopes a request counts in, besides "all" (drivers/budget.py)."""
        return "all"

    @classmethod
    def rate_limit_pause(cls, response: httpx.Response) -> float | None:
        """Seconds the provider asks everyone to stop calling, read from its answer (None: carry on).

        Default: a 429's Retry-After, else one second. Providers whose headers announce a spent window before
        a 429 (HubSpot's Remaining) override it, so the budget pauses before the provider refuses.
        """
        if response.status_code != 429:
            return None
        after = parse_retry_after(response.headers.get("Retry-After"))
        return after.total_seconds() if after is not None else 1.0

    def __init__(self, client: httpx.AsyncClient, config: dict[str, Any] | None = None) -> None:
        self.client = client
        self.config: dict[str, Any] = dict(config or {})
        self.default_region: str = region_of(self.config)  # the tenant's, set at tenant creation

    def read_also(self, fields: Mapping[str, Collection[str]]) -> None:
        """Have reads of each object also return these provider fields (a tenant's mapped custom fields)."""
        if self.extra_fields_key is None:
            return
        current = dict(self.config.get(self.extra_fields_key) or {})
        for obj, names in fields.items():
            current[obj] = list(dict.fromkeys([*current.get(obj, []), *names]))
        self.config[self.extra_fields_key] = current

    @property
    def _key_field(self) -> str:
        return str(self.config.get("idempotency_field", self.idempotency_field))

    @property
    def _fingerprint_field(self) -> str:
        return str(self.config.get("fingerprint_field", self.fingerprint_field))

    # ----- verbs -------------------------------------------------------------------------------

    async def test_connection(self) -> ConnectionCheck:
        """One cheap authenticated call; a failure becomes (False, reason) instead of an exception."""
        try:
            await self._probe()
        except DriverError as exc:
            return ConnectionCheck(ok=False, reason=str(exc))
        return ConnectionCheck(ok=True)

    async def lookup_customer(
        self, *, phone: str | None = None, email: str | None = None, external_id: str | None = None
    ) -> CustomerRecord | None:
        """Find one customer; tries phone (normalized to E.164) first, then email, then external id."""
        if phone is None and email is None and external_id is None:
            raise InvalidRequestError("lookup needs a phone, email or external_id", provider=self.slug)
        if phone is not None:
            e164 = normalize_phone(phone, self.default_region)
            found = await self._find_customer_by_phone(e164) if e164 else None
            if found is not None:
                return found
        if email is not None:
            found = await self._find_customer_by_email(email.strip())
            if found is not None:
                return found
        if external_id is not None:
            try:
                return await self._get_customer(external_id)
            except NotFoundError:
                return None
        return None

    @abc.abstractmethod
    async def get_record(self, object: CrmObject, external_id: str) -> Record:
        """Read one record by provider id; NotFoundError when it does not exist (or was deleted)."""

    @abc.abstractmethod
    async def search_records(self, object: CrmObject, query: str, limit: int = 20) -> list[Record]:
        """Free-text search within one object."""

    @abc.abstractmethod
    async def create_record(self, object: CrmObject, fields: Mapping[str, Any], idempotency_key: str) -> CreateResult:
        """Create via the provider's natural upsert: the same key returns the same record.

        The same key with different fields raises ConflictError where the provider lets us detect it.
        """

    @abc.abstractmethod
    async def update_record(self, object: CrmObject, external_id: str, fields: Mapping[str, Any]) -> Record | None:
        """Partial update of only `fields`; None when the provider acknowledges without the record."""

    @abc.abstractmethod
    async def list_recent(self, object: CrmObject, since: datetime, limit: int = 100) -> list[Record]:
        """Records modified at or after `since`, oldest first, following provider pages up to `limit`."""

    @abc.abstractmethod
    async def delete_record(self, object: CrmObject, external_id: str, *, hard: bool = False) -> DeleteResult:
        """Delete; `hard` asks for permanent erasure where the provider offers it (see hard_deleted)."""

    @abc.abstractmethod
    async def describe_schema(self, object: CrmObject) -> list[FieldInfo]:
        """The provider's real field list for the object."""

    @abc.abstractmethod
    async def append_note(
        self, customer_external_id: str, note_external_id: str | None, text: str, *, batch_key: str
    ) -> CreateResult:
        """Create a note on the customer (note id None) or append one batch of `text` to an existing note.

        A conversation transcript is ONE note updated in batches. Exactly once per `batch_key`: creating
        the note is idempotent under that key, and an append writes `text` followed by
        `batch_marker(batch_key)` (`appended()` does it), so a retried batch is found wherever it stands in
        the note — even after later batches or a summary — and is not written twice.
        """

    async def create_field(self, object: CrmObject, name: str, label: str, *, unique: bool) -> bool:
        """Create a text field (255) on the object through the provider's metadata API; True once it exists.

        False: the provider offers no such API (an admin creates it by hand). A refusal (missing scope or
        permission) raises its DriverError.
        """
        return False

    async def match_customers(self, items: Sequence[MatchItem]) -> dict[str, str | None]:
        """The CRM's own customer record for each item of a batch (a caller it already knows is updated, not
        duplicated): per item key, the record id, or None when the CRM has none.

        Matched as `lookup_customer` matches (phone normalized to E.164, then email); an item's `known_id` (the
        phone index's hint) answers when that record still carries the phone. A failed call raises its
        DriverError and fails the whole batch, so callers send at most `match_size` items a call. This default
        loops over `lookup_customer` (`match_size` 1), so every driver has it; a provider that can match many
        customers in a few calls overrides it and raises `match_size`.
        """
        found: dict[str, str | None] = {}
        for item in items:
            found[item.key] = await self._known(item)
            if found[item.key] is None and (item.phone or item.email):
                record = await self.lookup_customer(phone=item.phone, email=item.email)
                found[item.key] = record.external_id if record is not None else None
        return found

    async def _known(self, item: MatchItem) -> str | None:
        """`item.known_id` when that record still carries the item's phone (one read by id), else None."""
        e164 = normalize_phone(item.phone, self.default_region) if item.phone else None
        if item.known_id is None or e164 is None:
            return None
        try:
            record = await self._get_customer(item.known_id)
        except NotFoundError:
            return None
        carried = (record.fields.get(name) for name in self._phone_fields(CrmObject.CUSTOMER))
        return record.external_id if self._same_phone(e164, record.phone, *carried) else None

    def _phone_fields(self, object: CrmObject) -> list[str]:
        """The provider fields this driver maps `<object>.phone` and `<object>.mobile_phone` to."""
        catalog = self.default_field_catalog
        return [name for key in ("phone", "mobile_phone") if (name := catalog.get(f"{object.value}.{key}"))]

    async def upsert_many(self, object: CrmObject, items: Sequence[UpsertItem]) -> list[UpsertOutcome]:
        """Write a batch: create each item under its idempotency key, or update it when its id is known.

        One outcome per item, in order; a failed item carries its taxonomy error and fails only itself.
        This default loops over the single verbs, so every driver has it; a provider with a batch API
        (set `batch_size`) overrides it. Callers split batches to `batch_size`.
        """
        outcomes: list[UpsertOutcome] = []
        for item in items:
            try:
                if item.external_id is not None:
                    await self.update_record(object, item.external_id, item.fields)
                    outcomes.append(UpsertOutcome(external_id=item.external_id, created=False))
                else:
                    created = await self.create_record(object, item.fields, item.idempotency_key)
                    outcomes.append(UpsertOutcome(external_id=created.external_id, created=created.created))
            except DriverError as exc:
                outcomes.append(UpsertOutcome(error=exc))
        return outcomes

    # ----- provider hooks ----------------------------------------------------------------------

    @abc.abstractmethod
    async def _probe(self) -> None:
        """The cheapest authenticated call the provider offers."""

    @abc.abstractmethod
    async def _find_customer_by_phone(self, e164: str) -> CustomerRecord | None: ...

    @abc.abstractmethod
    async def _find_customer_by_email(self, email: str) -> CustomerRecord | None: ...

    @abc.abstractmethod
    async def _get_customer(self, external_id: str) -> CustomerRecord: ...

    def _provider_code(self, response: httpx.Response) -> str | None:
        """The provider's machine-readable error code from an error body (never its message)."""
        return None

    def _classify(self, response: httpx.Response, provider_code: str | None) -> type[DriverError] | None:
        """Provider-specific status overrides (e.g. Salesforce 403 REQUEST_LIMIT_EXCEEDED)."""
        return None

    def _field_problems(self, response: httpx.Response) -> dict[str, str]:
        """{field name: required | unknown | read_only | invalid} from a validation error body (names only,
        through `errors.field_problems`); {} when the provider names none."""
        return {}

    def _retry_after(self, response: httpx.Response) -> timedelta | None:
        return parse_retry_after(response.headers.get("Retry-After"))

    # ----- shared plumbing ---------------------------------------------------------------------

    def _same_phone(self, e164: str, *stored: str | None) -> bool:
        """Whether any stored phone is `e164` once normalized (search hits match digits, not countries)."""
        return any(normalize_phone(raw, self.default_region) == e164 for raw in stored if raw)

    def _require(self, object: CrmObject | str) -> CrmObject:
        try:
            canonical = CrmObject(object)
        except ValueError:
            canonical = None
        if canonical is None or canonical not in self.supported_objects:
            raise InvalidRequestError(f"object {object!s} is not supported", provider=self.slug)
        return canonical

    async def _request(self, method: str, url: str, *, accept: Collection[int] = (), **kwargs: Any) -> httpx.Response:
        """Send one request; map transport failures and error statuses to DriverError, once.

        `accept` lists error statuses returned to the caller instead (a batch answering 400 with per-row results).
        """
        try:
            response = await self.client.request(method, url, **kwargs)
        except OutboundRefusedError as exc:  # SSRF guard: a configured URL that must not be called
            raise InvalidRequestError(exc.reason, provider=self.slug, provider_code="outbound_refused") from exc
        except httpx.TimeoutException as exc:
            raise UnavailableError(f"{type(exc).__name__} during {method}", provider=self.slug) from exc
        except httpx.TransportError as exc:
            # The exception text can carry the URL (and so query values): keep only its type.
            raise UnavailableError(f"{type(exc).__name__} during {method}", provider=self.slug) from exc
        if response.status_code >= 400:
            await response.aread()
            if response.status_code not in accept:
                raise self._error_for(method, response)
        return response

    async def _request_or_none(self, method: str, url: str, **kwargs: Any) -> httpx.Response | None:
        """Like _request, but a 404 means "absent" (None) rather than NotFoundError."""
        try:
            return await self._request(method, url, **kwargs)
        except NotFoundError:
            return None

    async def _request_json(self, method: str, url: str, **kwargs: Any) -> Any:
        return self._json(method, await self._request(method, url, **kwargs))

    def _json(self, method: str, response: httpx.Response) -> Any:
        """The body of a success response; None when empty, UnavailableError when it is not JSON."""
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:  # a success status with a non-JSON body: a proxy or an outage page
            message = f"{method} answered {response.status_code} without JSON"
            raise UnavailableError(message, provider=self.slug, status_code=response.status_code) from exc

    def _error_for(self, method: str, response: httpx.Response) -> DriverError:
        status = response.status_code
        try:
            provider_code = self._provider_code(response)
        except ValueError:  # the body was not JSON: a proxy or load balancer answered
            provider_code = None
        try:
            fields = self._field_problems(response) if 400 <= status < 500 else {}
        except (ValueError, TypeError, AttributeError, KeyError):  # not JSON, or not a shape we know
            fields = {}
        cls = self._classify(response, provider_code) or _STATUS_ERRORS.get(status)
        if cls is None:
            cls = UnavailableError if status >= 500 else InvalidRequestError
        retry_after = self._retry_after(response) if cls.retryable else None
        return cls(
            f"{method} failed with HTTP {status}",
            provider=self.slug,
            status_code=status,
            retry_after=retry_after,
            provider_code=provider_code,
            fields=fields,
        )
