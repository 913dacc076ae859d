"""How the rest of the system gets a ready driver for a tenant: `DriverProvider.open(tenant, actor)`.

The implementation (vault issue) loads the tenant's provider and settings, decrypts its credentials
(audited as `actor`), wires the auth flow with a persistent, single-flight token source, and yields the
driver on an httpx client it closes afterwards. Activities and API routes depend only on this protocol,
so tests can hand in a provider that points drivers at a sandbox.
"""

from __future__ import annotations

import uuid
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from drivers.base import BaseDriver

ACTOR_TYPES = ("tool", "platform_operator", "system")


@dataclass(frozen=True)
class Actor:
    """Who caused a credential decrypt; recorded in the audit row."""

    type: str  # tool | platform_operator | system
    id: str
    purpose: str
    request_id: str | None = None
    conversation_id: str | None = None


class DriverProvider(Protocol):
    def open(self, tenant_id: uuid.UUID, actor: Actor) -> AbstractAsyncContextManager[BaseDriver]:
        """A driver for the tenant's CRM, authenticated; raises drivers.errors.AuthError when the
        connection needs to be reconnected and LookupError for an unknown or disabled tenant."""
        ...
