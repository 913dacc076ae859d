"""Per-tenant webhook secrets: stored in the credential vault under `webhook:{provider}`, cached briefly.

The blob is `{"secret": ...}` (the provider's signing secret, or a `whsec_` secret we issued), or
`{"path_token", "org_id"}` for a provider that signs nothing (its verifier's `secret_kind`). A provider that signs
with our OAuth app's client secret (`app_secret_signs`) needs no entry: the app's secret is used. Decrypts are
audited by the vault; the cache (60 s) keeps a burst of deliveries from writing an audit row each.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from api.context import AppContext
from drivers.webhooks import verifier_for
from vault.connections import Actor
from vault.credentials import CredentialNotFoundError, CredentialVault

CACHE_SECONDS = 60.0
ACTOR = Actor(type="system", id="webhooks", purpose="verify inbound webhook")


def credential_name(provider: str) -> str:
    return f"webhook:{provider}"


def vault_of(ctx: AppContext) -> CredentialVault:
    vault = ctx.extras.get("vault")
    if vault is None:
        vault = ctx.extras["vault"] = CredentialVault.from_settings(ctx.settings, ctx.sessions)
    assert isinstance(vault, CredentialVault)
    return vault


def _cache(ctx: AppContext) -> dict[tuple[uuid.UUID, str], tuple[float, dict[str, Any] | None]]:
    cache: dict[tuple[uuid.UUID, str], tuple[float, dict[str, Any] | None]] = ctx.extras.setdefault(
        "webhook_secret_cache", {})
    return cache


async def secret_for(ctx: AppContext, tenant_id: uuid.UUID, provider: str) -> dict[str, Any] | None:
    """The tenant's secret blob; a burst of deliveries shares one vault read (single flight per key)."""
    key, cache = (tenant_id, provider), _cache(ctx)
    hit = cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
        return hit[1]
    locks: dict[tuple[uuid.UUID, str], asyncio.Lock] = ctx.extras.setdefault("webhook_secret_locks", {})
    async with locks.setdefault(key, asyncio.Lock()):
        hit = cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
        return await _load(ctx, tenant_id, provider)


async def _load(ctx: AppContext, tenant_id: uuid.UUID, provider: str) -> dict[str, Any] | None:
    key, cache = (tenant_id, provider), _cache(ctx)
    try:
        secret: dict[str, Any] | None = dict((await vault_of(ctx).load(tenant_id, ACTOR,
                                                                        credential_name(provider))).secret)
    except CredentialNotFoundError:
        app = ctx.settings.oauth_clients.get(provider)
        verifier = verifier_for(provider)
        signs_with_app = verifier is not None and verifier.app_secret_signs
        secret = {"secret": app.client_secret.get_secret_value()} if signs_with_app and app else None
    cache[key] = (time.monotonic(), secret)
    return secret


async def store_secret(ctx: AppContext, tenant_id: uuid.UUID, provider: str, secret: dict[str, Any],
                       actor: Actor) -> None:
    await vault_of(ctx).store(tenant_id, credential_name(provider), secret, actor=actor)
    _cache(ctx).pop((tenant_id, provider), None)
