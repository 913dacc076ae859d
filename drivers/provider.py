"""The facts a provider declares in its driver file, read from there by the vault, the connect flow, the
provider budget and the console — never tabled elsewhere.

A driver class sets, next to its verbs:
- `oauth`: how its authorization-code flow starts (`OAuthApp`), or None for providers connected by form;
- `credential_form`: the pydantic model an operator's posted credentials must match (`CredentialForm`);
- `rate_limits`: the provider's documented limits (`RateLimit`), which size the per-(tenant, provider) budget.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

__all__ = ["CredentialForm", "OAuthApp", "RateLimit"]


@dataclass(frozen=True)
class OAuthApp:
    """How one provider's authorization-code flow starts (the token endpoint is the driver's `token_url`).

    Attributes:
        authorize_url: the consent page; `sandbox_authorize_url` when the tenant is a sandbox org.
        scopes: what we ask for, joined with `scope_separator`.
        pkce: whether the provider documents PKCE (S256) on this flow; we send it only where it does.
        extra_params: fixed query parameters the provider needs (e.g. Zoho's `access_type=offline`).
    """

    authorize_url: str
    scopes: tuple[str, ...]
    pkce: bool
    sandbox_authorize_url: str | None = None
    scope_separator: str = " "
    extra_params: tuple[tuple[str, str], ...] = ()


class CredentialForm(BaseModel):
    """What an operator posts to connect a form-credential provider; `secret()` is the blob the vault stores.

    An API body, not a Temporal payload: unknown fields are an operator's typo worth a 422. Fields holding
    secrets should be `SecretStr` or plain `str` with a length cap; never echo them in messages.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    # Fields safe to show in repr()/str(); every other field's value is masked (forms hold secrets).
    public_fields: ClassVar[frozenset[str]] = frozenset()

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, value if name in self.public_fields else "**********"

    @abc.abstractmethod  # pydantic's model metaclass is an ABCMeta: a form without secret() cannot be built
    def secret(self) -> dict[str, Any]:
        """The credential blob the vault stores for this provider."""

    def reveal(self) -> str | None:
        """A secret the form generated (e.g. a webhook signing secret), shown to the operator once; else None."""
        return None

    def settings(self) -> dict[str, Any]:
        """Non-secret tenant settings the form carries (e.g. a practice id or environment); merged into the
        tenant's settings on connect. Default: none."""
        return {}


@dataclass(frozen=True)
class RateLimit:
    """One documented provider limit: at most `requests` per `per_seconds`, for calls in `scope`.

    `scope` is "all" for the account-wide limit or a narrower bucket a driver names for its calls (e.g.
    HubSpot's "search"); a call counts against "all" and against its own scope. `source` says where the
    number comes from (the provider's docs), so a reviewer can check it.
    """

    requests: int
    per_seconds: float
    scope: str = "all"
    source: str = ""
