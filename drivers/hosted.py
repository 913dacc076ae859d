"""What the vertical CRMs' drivers (Mindbody, Tekmetric, Toast) share: hosts chosen by the tenant's environment,
a token endpoint on that host, and small wire helpers (timestamps, numeric ids, error bodies)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx

from drivers.base import BaseDriver
from drivers.errors import ConflictError, NotFoundError

__all__ = ["HostedDriver", "int_id", "iso_seconds", "json_object", "key_reused", "parse_time"]


class HostedDriver(BaseDriver):
    """A driver whose API host depends on the tenant's `environment` (production | sandbox) and whose token
    endpoint is `token_path` on that host. `config["base_url"]` / `config["token_url"]` still win (tests)."""

    hosts: ClassVar[dict[str, str]]
    token_path: ClassVar[str]

    @classmethod
    def api_base_url(cls, config: Mapping[str, Any] | None = None) -> str:
        config = config or {}
        return str(config.get("base_url") or cls.hosts.get(str(config.get("environment", "production")),
                                                            cls.hosts["production"]))

    @classmethod
    def oauth_token_url(cls, config: Mapping[str, Any] | None = None) -> str | None:
        return str((config or {}).get("token_url") or cls.api_base_url(config) + cls.token_path)


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The body as a JSON object, or {} (an empty or non-JSON body, e.g. Tekmetric's 401 and 429)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def int_id(external_id: str, provider: str) -> int:
    """A numeric provider id; anything else cannot name a record there (not found, not a bad request)."""
    try:
        return int(external_id)
    except ValueError:
        raise NotFoundError(f"{provider} ids are numbers", provider=provider) from None


def iso_seconds(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    """ISO 8601 as these providers send it: `Z`, `+00:00` or `+0000`; naive means UTC."""
    text = value.strip().replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def key_reused(provider: str, existing_id: str) -> ConflictError:
    """The ConflictError of an idempotency key reused with other fields, naming the record that holds the key
    (`existing_id`: the mirror writes a row's newer version there as an update)."""
    error = ConflictError("idempotency key reused with different fields", provider=provider,
                          provider_code="IDEMPOTENCY_KEY_REUSED")
    vars(error)["existing_id"] = existing_id  # set after __init__ so it holds whether or not __init__ takes it
    return error
