"""What the tool and /v1 routes share to reach a tenant's CRM: the driver provider, the request id, the
tenant's field mapping and the classification of CRM failures.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request

from api.context import context_of
from api.errors import Problem
from api.schemas import FailureReason, Fallback
from drivers import mapping as engine
from drivers.base import BaseDriver, CrmObject
from drivers.errors import (
    AuthError,
    ConflictError,
    DriverError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    UnavailableError,
)
from drivers.mapping import FieldValueError, TenantMapping, UnmappedFieldsError
from store.field_mapping import cached_mapping
from vault.connections import DriverProvider
from vault.crypto import CredentialKeyError
from vault.provider import VaultDriverProvider

log = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


def driver_provider(request: Request) -> DriverProvider:
    """The app's DriverProvider: `AppContext.extras["drivers"]` when one was handed in (tests, the dev stack),
    else the vault's, built on first use from settings."""
    ctx = context_of(request)
    provider: DriverProvider | None = ctx.extras.get("drivers")
    if provider is None:
        try:
            # It lives as long as the process, and the lifespan closes it: its CRM connections are reused across
            # tool calls (a caller on the line does not wait for a TCP and TLS handshake each time).
            provider = ctx.extras.setdefault("drivers", VaultDriverProvider.from_settings(
                ctx.settings, ctx.sessions, reuse_connections=True))
        except CredentialKeyError:
            log.error("no usable credential encryption key: CRM routes cannot open drivers")
            raise Problem(503, "crm-not-configured", "This deployment cannot open CRM connections.",
                          "The credential encryption key is missing or malformed.") from None
    return provider


def request_id(request: Request) -> str:
    """The caller's X-Request-ID when it is a sane token, else a fresh one (it lands in audit rows)."""
    given = request.headers.get("x-request-id", "")
    return given if _REQUEST_ID.match(given) else uuid.uuid4().hex


@dataclass(frozen=True)
class Failure:
    """A CRM failure in the terms both surfaces answer with."""

    reason: FailureReason
    status: int  # the /v1 API's HTTP status for it
    retry_after: int | None
    fallback: Fallback
    message: str
    # The fields the CRM named, in the mapping engine's problem shape: [{field, code, message}], names only.
    fields: list[dict[str, Any]] = field(default_factory=list)


def classify(exc: DriverError | LookupError) -> Failure:
    """Map a driver error (or an unconnected tenant) to a stable reason. Messages are ours, never the CRM's."""
    if isinstance(exc, LookupError):
        return Failure("crm_not_connected", 409, None, "offer_follow_up",
                       "The business has not connected its CRM (or the connection is disabled).")
    retry_after = None if exc.retry_after is None else max(1, int(exc.retry_after.total_seconds() + 0.999))
    if isinstance(exc, AuthError):
        return Failure("crm_auth", 502, None, "offer_follow_up",
                       "The CRM refused our credentials; the business must reconnect it.")
    if isinstance(exc, RateLimitedError):
        return Failure("crm_rate_limited", 503, retry_after or 30, "retry_later",
                       "The CRM is throttling requests right now.")
    if isinstance(exc, UnavailableError):
        return Failure("crm_unavailable", 503, retry_after, "offer_follow_up", "The CRM is not answering right now.")
    if isinstance(exc, NotFoundError):
        return Failure("not_found", 404, None, "confirm_details", "The CRM has no such record.")
    if isinstance(exc, ConflictError):
        return Failure("crm_conflict", 409, None, "confirm_details",
                       "The CRM refused the write as a conflict with an existing record "
                       "(a duplicate unique value, or the idempotency key reused with other fields).")
    if isinstance(exc, InvalidRequestError):
        if exc.fields:  # names only (never values): which fields the CRM wanted, or refused
            named = [{"field": name, "code": kind, "message": f"{name} ({kind.replace('_', ' ')})"}
                     for name, kind in sorted(exc.fields.items())]
            return Failure("crm_rejected", 422, None, "confirm_details", "The CRM rejected the request because of "
                           f"these fields: {'; '.join(str(f['message']) for f in named)}.", named)
        return Failure("crm_rejected", 422, None, "confirm_details",
                       "The CRM rejected the request (an unknown field or an invalid value).")
    return Failure("crm_error", 502, None, "offer_follow_up", "The CRM call failed.")


def failure_problem(failure: Failure) -> Problem:
    slug = failure.reason.replace("_", "-")
    headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else None
    extra: dict[str, Any] = {"fields": failure.fields} if failure.fields else {}
    return Problem(failure.status, slug, failure.message, None, headers, reason=failure.reason,
                   retry_after=failure.retry_after, suggested_fallback=failure.fallback, **extra)


def require_supported(driver: BaseDriver, object: CrmObject) -> None:
    if object not in driver.supported_objects:
        supported = ", ".join(sorted(str(o) for o in driver.supported_objects))
        raise Problem(422, "unsupported-object", f"This tenant's CRM ({driver.slug}) has no {object} object.",
                      f"Supported objects: {supported}.", supported_objects=sorted(driver.supported_objects))


def mapping_problem(exc: UnmappedFieldsError) -> Problem:
    """A refused write as a structured 422 the agent can repair: each field, why, and what would do instead."""
    invalid = isinstance(exc, FieldValueError)
    slug, title = (("invalid-field-values", "Some values do not fit the CRM's fields.") if invalid else
                   ("unmapped-fields", "Some fields are not mapped to this CRM."))
    detail = "; ".join(p.message + (f" (did you mean {', '.join(p.suggestions)}?)" if p.suggestions else "")
                       for p in exc.problems)
    return Problem(422, slug, title, detail, reason="invalid_fields", suggested_fallback="confirm_details",
                   fields=[p.as_dict() for p in exc.problems])


@dataclass(frozen=True)
class FieldMap:
    """The tenant's mapping (drivers/mapping.py) as the API routes use it: refusals become 422 problems."""

    mapping: TenantMapping

    def to_provider(self, object: CrmObject, fields: dict[str, Any], *, creating: bool = False) -> dict[str, Any]:
        """Canonical keys (short `budget_max` or full `lead.budget_max`) or provider names → the CRM payload;
        `creating`: also refuse a create that leaves a field the CRM requires empty (naming it)."""
        try:
            payload = engine.to_provider(self.mapping, object, fields)
            missing = engine.missing_required(self.mapping, object, payload) if creating else []
            if missing:
                raise FieldValueError(missing)
        except UnmappedFieldsError as exc:
            raise mapping_problem(exc) from None
        return payload

    def to_canonical(self, object: CrmObject, fields: dict[str, Any]) -> dict[str, Any]:
        """Provider fields renamed to the tenant's canonical keys where mapped; others keep their names."""
        return engine.to_canonical(self.mapping, object, fields)


async def load_field_map(sessions: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID,
                         driver: BaseDriver) -> FieldMap:
    mapping = await cached_mapping(sessions, tenant_id, driver)  # a few seconds per process (store/cache.py)
    driver.read_also(mapping.custom_fields())  # lookups and lists return the tenant's mapped custom fields
    return FieldMap(mapping)
