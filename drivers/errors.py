"""The driver error taxonomy. Every driver maps its provider's failures to exactly these classes.

Messages never carry customer content: provider error bodies often echo field values ("A contact with
email a@b.com already exists"), so drivers keep only the provider's machine-readable error *code*
(`provider_code`) and a fixed message of their own. Field *names* are not customer content: a validation
failure says which fields the CRM refused or wanted (`fields`, name → problem), never their values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

__all__ = [
    "AuthError",
    "ConflictError",
    "DeleteUnsupportedError",
    "DriverError",
    "InvalidRequestError",
    "NotFoundError",
    "RateLimitedError",
    "UnavailableError",
    "field_problems",
    "parse_retry_after",
]

# What a field problem is called across providers (HubSpot PROPERTY_DOESNT_EXIST, Salesforce
# REQUIRED_FIELD_MISSING, Zoho MANDATORY_NOT_FOUND…): drivers map their codes to these.
FIELD_REQUIRED, FIELD_UNKNOWN, FIELD_READ_ONLY, FIELD_INVALID = "required", "unknown", "read_only", "invalid"
FIELD_KINDS = (FIELD_REQUIRED, FIELD_UNKNOWN, FIELD_READ_ONLY, FIELD_INVALID)
# A field name as CRMs spell them (API names, dotted paths); anything else is not a name and is dropped, so a
# provider that put a value where a name belongs cannot leak it through here.
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:\-]{0,99}$")


class DriverError(Exception):
    """Base of every error a driver raises.

    Attributes:
        provider: the driver slug (or "oauth" for a token endpoint without a slug).
        status_code: the HTTP status that caused it, None for transport errors and local checks.
        retry_after: the server's requested delay, when it gave one.
        provider_code: the provider's own error code (e.g. "INVALID_SESSION_ID"), never its message.
        code: the taxonomy code ("auth_error", "rate_limited", ...), stable for callers to branch on.
        retryable: whether retrying the same call can succeed without a human.
    """

    code: ClassVar[str] = "driver_error"
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status_code: int | None = None,
        retry_after: timedelta | None = None,
        provider_code: str | None = None,
        fields: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message
        self.provider = provider
        self.status_code = status_code
        self.retry_after = retry_after
        self.provider_code = provider_code
        self.fields: dict[str, str] = dict(fields or {})
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [f"{self.provider}: {self.code}: {self.message}"]
        if self.status_code is not None:
            parts.append(f"status={self.status_code}")
        if self.provider_code:
            parts.append(f"provider_code={self.provider_code}")
        if self.retry_after is not None:
            parts.append(f"retry_after={self.retry_after.total_seconds():g}s")
        if self.fields:
            parts.append("fields=" + ",".join(f"{name}:{kind}" for name, kind in sorted(self.fields.items())))
        return " ".join(parts)


class AuthError(DriverError):
    """Credentials are missing, expired beyond refresh, revoked or lack scope: a human must reconnect."""

    code = "auth_error"


class NotFoundError(DriverError):
    """The record or object does not exist (404)."""

    code = "not_found"


class InvalidRequestError(DriverError):
    """The provider rejected the request itself (other 4xx, unsupported object, bad field)."""

    code = "invalid_request"


class RateLimitedError(DriverError):
    """The provider throttled us; retry after `retry_after` (None: the caller picks a backoff)."""

    code = "rate_limited"
    retryable = True


class UnavailableError(DriverError):
    """5xx, transport failures and timeouts: the same call may succeed later."""

    code = "unavailable"
    retryable = True


class DeleteUnsupportedError(DriverError):
    """The provider cannot delete this object (or cannot hard-delete it): an operator must do it by hand."""

    code = "delete_unsupported"


class ConflictError(DriverError):
    """The write conflicts with existing state, e.g. an idempotency key reused with different fields.

    `existing_id` names the record that already holds the key, when the driver knows it: the mirror then
    writes its newer version there as an update (the key is the row's, so a changed row is no misuse).
    """

    code = "conflict"

    def __init__(self, message: str, *, existing_id: str | None = None, **kwargs: Any) -> None:
        self.existing_id = existing_id
        super().__init__(message, **kwargs)


def field_problems(pairs: Iterable[tuple[object, str]]) -> dict[str, str]:
    """{field name: problem} from (name, problem) pairs a driver parsed, keeping only names that look like
    field names (at most 20) and known problem kinds (others become `invalid`)."""
    found: dict[str, str] = {}
    for name, kind in pairs:
        if isinstance(name, str) and _FIELD_NAME.match(name) and len(found) < 20:
            found.setdefault(name, kind if kind in FIELD_KINDS else FIELD_INVALID)
    return found


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> timedelta | None:
    """Parse a Retry-After header in either RFC 9110 form: delta-seconds or an HTTP-date.

    A date in the past gives a zero delay; garbage gives None so the caller falls back to its backoff.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # "inf"/"nan" parse as floats but are no delay a server meant.
        return timedelta(seconds=max(seconds, 0.0)) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; obsolete forms parse naive
        when = when.replace(tzinfo=UTC)
    delta = when - (now or datetime.now(UTC))
    return max(delta, timedelta(0))
