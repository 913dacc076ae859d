"""The driver contract: canonical objects, record models and the async verbs every CRM driver implements.

A driver receives a ready `httpx.AsyncClient` (base_url, auth, timeouts, transport are the caller's) and
never sleeps or retries: Temporal owns retries and reads `DriverError.retryable` / `retry_after`.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar

import httpx
import phonenumbers

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
    Record,
)

__all__ = [
    "BaseDriver",
    "ConnectionCheck",
    "CreateResult",
    "CrmObject",
    "CustomerRecord",
    "DeleteResult",
    "FieldInfo",
    "Record",
    "appended",
    "full_name",
    "national_digits",
    "normalize_phone",
]


def normalize_phone(raw: str, default_region: str = "US") -> str | None:
    """E.164 form of `raw`, or None when it cannot be a phone number.

    `is_possible_number` rather than `is_valid_number`: CRMs hold test and fictional (555) numbers that
    the validity tables reject, and matching them is still what the caller wants.
    """
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def national_digits(e164: str) -> str:
    """The national significant number of an E.164 phone: what phone-field searches match on."""
    return str(phonenumbers.parse(e164).national_number)


def full_name(*parts: str | None) -> str | None:
    return " ".join(p for p in parts if p) or None


def appended(current: str | None, text: str) -> str | None:
    """`current` with `text` on a new line, or None when it already ends with `text`.

    None means a retried append already landed (the batch is the note's tail), so writing again would
    duplicate it. The cost: the same batch text twice in a row is kept once.
    """
    current = current or ""
    if current.endswith(text):
        return None
    return f"{current}\n{text}" if current else text


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
    `idempotency_field`; `default_region` for phone parsing, default "US").
    """

    slug: ClassVar[str]
    base_url: ClassVar[str] = ""
    supported_objects: ClassVar[frozenset[CrmObject]]
    default_field_catalog: ClassVar[dict[str, str]]
    hard_delete_supported: ClassVar[bool] = False
    # The provider's "lead" is the person's own contact record in a lifecycle stage (HubSpot), not a record of
    # its own: a lead of a known customer updates that customer's record instead of creating another.
    leads_are_contacts: ClassVar[bool] = False
    token_url: ClassVar[str | None] = None  # OAuth token endpoint; None when the provider has no OAuth
    # Provider fields our installer adds for idempotent create (config "idempotency_field"/"fingerprint_field").
    idempotency_field: ClassVar[str] = "crm_sor_idempotency_key"
    fingerprint_field: ClassVar[str] = "crm_sor_fingerprint"

    @classmethod
    def api_base_url(cls, config: Mapping[str, Any] | None = None) -> str:
        """The base_url the injected client needs for this tenant (`config["base_url"]` overrides)."""
        return str((config or {}).get("base_url") or cls.base_url)

    @classmethod
    def oauth_token_url(cls, config: Mapping[str, Any] | None = None) -> str | None:
        """The token endpoint for this tenant (`config["token_url"]` overrides, e.g. a sandbox)."""
        return (config or {}).get("token_url") or cls.token_url

    def __init__(self, client: httpx.AsyncClient, config: dict[str, Any] | None = None) -> None:
        self.client = client
        self.config: dict[str, Any] = dict(config or {})
        self.default_region: str = str(self.config.get("default_region", "US"))

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
        self,
        customer_external_id: str,
        note_external_id: str | None,
        text: str,
        *,
        idempotency_key: str | None = None,
    ) -> CreateResult:
        """Create a note on the customer (note id None) or append `text` to an existing note.

        A conversation transcript is ONE note updated in batches; re-appending the exact batch that
        already ends the note is a no-op, so a retried append does not duplicate text.
        """

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

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send one request; map transport failures and error statuses to DriverError, once."""
        try:
            response = await self.client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise UnavailableError(f"{type(exc).__name__} during {method}", provider=self.slug) from exc
        except httpx.TransportError as exc:
            # The exception text can carry the URL (and so query values): keep only its type.
            raise UnavailableError(f"{type(exc).__name__} during {method}", provider=self.slug) from exc
        if response.status_code >= 400:
            await response.aread()
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
        )
