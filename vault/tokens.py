"""A persistent, single-flight OAuth token source: what `OAuth2Auth` asks for tokens on vault-opened drivers.

Single-flight is a row lock plus a version compare-and-swap, not a Temporal workflow per credential:
  - the refresh sits on the synchronous tool-call path (an agent is on the phone), and the lock costs one
    round trip to the database we already read the credential from, while a workflow would put Temporal
    on that path (an API process could not refresh while Temporal is briefly away) and add scheduling
    latency to every refresh;
  - tokens then never leave the vault boundary, not even as encrypted payloads in workflow history.
Two layers: an asyncio lock per credential in this process (so 50 coroutines make one trip to the
database), then `CredentialVault.locked()` across processes. Whoever holds the lock re-reads the row: when
the stored access token is no longer the one that got the 401, another process already refreshed, and
nobody calls the token endpoint again.

Rotated refresh tokens are never dropped: the new blob is written in the same transaction that holds the
lock, and if that write fails, one more locked write is attempted before giving up loudly (ids only).
On a refused grant (`invalid_grant`) the row is re-read outside the lock before the connection is marked
`needs_reconnect`: a reconnect or another deployment may have replaced the tokens meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from drivers.auth import OAuthTokenSource, TokenSet
from drivers.base import BaseDriver
from drivers.errors import AuthError
from store.base import utcnow
from vault.connections import Actor
from vault.credentials import Credential, CredentialVault

log = logging.getLogger(__name__)

# Refresh this long before a stated expiry, so a request in flight does not race the deadline.
EXPIRY_MARGIN = timedelta(seconds=OAuthTokenSource.EXPIRY_MARGIN_SECONDS)

HttpFactory = Callable[[], AbstractAsyncContextManager[httpx.AsyncClient]]


@dataclass(frozen=True)
class _Latest:
    access_token: str = field(repr=False)
    version: int
    expires_at: datetime | None


def fresh(expires_at: datetime | None, now: datetime | None = None) -> bool:
    return expires_at is None or (now or utcnow()) < expires_at - EXPIRY_MARGIN


class TokenBroker:
    """Per-process state shared by every token source of one `VaultDriverProvider`.

    Attributes:
        refreshes: token-endpoint calls this process made, by credential id.
    """

    def __init__(self, vault: CredentialVault, http: HttpFactory, oauth_clients: dict[str, tuple[str, str]]
                 ) -> None:
        self.vault, self._http, self._oauth_clients = vault, http, oauth_clients
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}
        self._latest: dict[uuid.UUID, _Latest] = {}
        self.refreshes: dict[uuid.UUID, int] = {}

    def source(self, credential: Credential, *, driver: type[BaseDriver], config: Mapping[str, Any], actor: Actor
               ) -> PersistentTokenSource:
        self.remember(credential)
        return PersistentTokenSource(self, credential, driver=driver, config=config, actor=actor)

    def latest(self, credential_id: uuid.UUID) -> _Latest | None:
        return self._latest.get(credential_id)

    def remember(self, credential: Credential) -> None:
        token = credential.secret.get("access_token")
        known = self._latest.get(credential.id)
        if token and (known is None or known.version <= credential.version):
            self._latest[credential.id] = _Latest(str(token), credential.version, credential.expires_at)

    def keep_in_memory(self, credential_id: uuid.UUID, access_token: str) -> None:
        known = self._latest.get(credential_id)
        self._latest[credential_id] = _Latest(access_token, known.version if known else 0, None)

    def lock(self, credential_id: uuid.UUID) -> asyncio.Lock:
        return self._locks.setdefault(credential_id, asyncio.Lock())

    def client_pair(self, provider: str, secret: Mapping[str, Any]) -> tuple[str, str] | None:
        """The OAuth client that issued these tokens: the blob's own, else our app for the provider."""
        if secret.get("client_id") and secret.get("client_secret"):
            return str(secret["client_id"]), str(secret["client_secret"])
        return self._oauth_clients.get(provider)

    async def exchange(self, driver: type[BaseDriver], config: Mapping[str, Any], secret: dict[str, Any]
                       ) -> TokenSet:
        """One token grant at the provider; the driver knows its grant (refresh token, client credentials…)."""
        async with self._http() as http:
            return await driver.grant_token(http, secret, config, self.client_pair(driver.slug, secret))


def rotated_secret(secret: dict[str, Any], tokens: TokenSet) -> tuple[dict[str, Any], datetime | None]:
    """The blob after a refresh: new access token, the rotated refresh token (or the old one kept)."""
    updated = dict(secret)
    updated["access_token"] = tokens.access_token
    if tokens.refresh_token:  # a client-credentials or login grant has none, and keeps none
        updated["refresh_token"] = tokens.refresh_token
    if tokens.instance_url:
        updated["instance_url"] = tokens.instance_url
    expires_at = None if tokens.expires_in is None else utcnow() + timedelta(seconds=tokens.expires_in)
    return updated, expires_at


class PersistentTokenSource:
    """`drivers.auth.TokenSource` for one tenant's credential, persisted through the vault."""

    def __init__(self, broker: TokenBroker, credential: Credential, *, driver: type[BaseDriver],
                 config: Mapping[str, Any], actor: Actor) -> None:
        self._broker, self._credential, self._actor = broker, credential, actor
        self._driver, self._config = driver, config

    @property
    def provider(self) -> str:
        return self._credential.provider

    async def current(self) -> str:
        latest = self._broker.latest(self._credential.id)
        if latest is not None and fresh(latest.expires_at):
            return latest.access_token
        return await self.refreshed(latest.access_token if latest else "")

    async def refreshed(self, stale: str) -> str:
        broker, cid = self._broker, self._credential.id
        async with broker.lock(cid):
            latest = broker.latest(cid)
            if latest is not None and latest.access_token != stale and fresh(latest.expires_at):
                return latest.access_token  # refreshed by another request of this process meanwhile
            return await self._refresh_across_processes(stale)

    async def _refresh_across_processes(self, stale: str) -> str:
        vault, tenant, provider = self._broker.vault, self._credential.tenant_id, self.provider
        tokens: TokenSet | None = None
        seen: Credential | None = None
        try:
            async with vault.locked(tenant, provider, self._actor) as locked:
                seen = current = locked.credential
                if current.needs_reconnect:
                    raise AuthError("the connection needs to be reconnected", provider=provider)
                token = current.secret.get("access_token")
                if token and token != stale and fresh(current.expires_at):
                    self._broker.remember(current)  # another process refreshed while we waited
                    return str(token)
                tokens = await self._broker.exchange(self._driver, self._config, current.secret)
                self._broker.refreshes[current.id] = self._broker.refreshes.get(current.id, 0) + 1
                secret, expires_at = rotated_secret(current.secret, tokens)
                self._broker.remember(await locked.replace(secret, expires_at=expires_at))
                return tokens.access_token
        except AuthError as exc:
            # Only the token endpoint's refusal (it has a status) is a refused grant worth a re-read.
            if tokens is not None or seen is None or seen.needs_reconnect or exc.status_code is None:
                raise
            return await self._after_refused_grant(stale, seen, exc)
        except Exception:
            if tokens is None or seen is None:
                raise
            # The provider issued tokens (maybe a rotated refresh token) but the write failed: try once more.
            return await self._rescue(seen, tokens)

    async def _after_refused_grant(self, stale: str, seen: Credential, refused: AuthError) -> str:
        vault = self._broker.vault
        current = await vault.load(seen.tenant_id, self._actor, provider=seen.provider)
        token = current.secret.get("access_token")
        if current.version != seen.version and not current.needs_reconnect and token and token != stale:
            self._broker.remember(current)  # rotated elsewhere (a reconnect, another deployment)
            return str(token)
        await vault.mark_needs_reconnect(current, self._actor)
        log.warning("token refresh refused for credential %s (%s): marked needs_reconnect", current.id,
                    refused.provider_code or refused.status_code)
        raise AuthError("token refresh refused; the connection needs to be reconnected", provider=seen.provider,
                        status_code=refused.status_code, provider_code=refused.provider_code)

    async def _rescue(self, seen: Credential, tokens: TokenSet) -> str:
        vault = self._broker.vault
        try:
            async with vault.locked(seen.tenant_id, seen.provider, self._actor) as locked:
                if locked.credential.version == seen.version:
                    secret, expires_at = rotated_secret(locked.credential.secret, tokens)
                    self._broker.remember(await locked.replace(secret, expires_at=expires_at))
                    return tokens.access_token
        except Exception:
            pass
        # Keep serving the new access token from memory; the stored refresh token may now be stale.
        log.error("credential %s: refreshed tokens could not be persisted; a reconnect may be needed", seen.id)
        self._broker.keep_in_memory(seen.id, tokens.access_token)
        return tokens.access_token
