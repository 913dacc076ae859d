"""A tenant's credential blob in `tenant_credentials`: store, load (audited), lock-and-replace, re-wrap.

The blob is JSON (tokens, keys, the OAuth client), encrypted as one unit. `version` is the compare-and-swap
counter: every write is `UPDATE … WHERE version = <read version>` and bumps it, so a writer that read an
older row can never silently overwrite a newer one.

`locked()` is the cross-process critical section the token refresh uses. It takes the row lock by writing
first (`UPDATE … SET version = version`): on PostgreSQL that is a row lock, on SQLite the database write
lock, so one portable statement serializes refreshers on both. Audit rows for what happens under the lock
are written after it is released: on SQLite an audit insert inside would wait on our own lock.

`opened()` is what opening a driver reads: the credential as this process decrypted it within the last few seconds
(`store/cache.py`), so an agent's burst of tool calls costs one decrypt, not one per call. Every opening is still
audited as its actor (request and conversation id): a real decrypt's row is written before it returns, a reused
copy's (`"cached": true`) is written while the caller gets on with its work and awaited before the credential is
used (the driver provider waits for it before the first request leaves). Every write through this vault
invalidates the copy once committed; a change made by another process (a reconnect, a refresh, a revocation) is
seen within the cache's TTL.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import telemetry
from settings import Settings
from store.base import utcnow
from store.cache import CONFIG_TTL_SECONDS, TtlCache
from store.models import TenantCredential
from vault.audit import AuditTrail
from vault.connections import Actor
from vault.crypto import CredentialKeyError, EnvKey, load_env_key
from vault.kms import KmsEnvelope
from vault.schemes import RowRef, Sealed, Sealer


class CredentialNotFoundError(LookupError):
    """The tenant has no stored credential (it was never connected)."""


class StaleCredentialError(RuntimeError):
    """A compare-and-swap lost: someone else wrote the row first; re-read and decide again."""


@dataclass(frozen=True)
class Credential:
    """A decrypted credential row. `secret` is never part of repr()."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    provider: str
    version: int
    scheme: str
    expires_at: datetime | None
    rotated_at: datetime | None
    needs_reconnect: bool
    secret: dict[str, Any] = field(repr=False)


def row_ref(row: TenantCredential) -> RowRef:
    return RowRef(row.tenant_id, row.provider, row.id)


def row_sealed(row: TenantCredential) -> Sealed:
    return Sealed(row.scheme, row.key_version, row.nonce, row.ciphertext, row.wrapped_key)


def _decrypt_details(credential: Credential) -> dict[str, Any]:
    return {"credential_id": str(credential.id), "provider": credential.provider, "scheme": credential.scheme,
            "version": credential.version}


def _encode(secret: dict[str, Any]) -> bytes:
    return json.dumps(secret, sort_keys=True, separators=(",", ":")).encode()


class LockedCredential:
    """The credential as read under its row lock; `replace()` writes a new blob in the same transaction."""

    def __init__(self, vault: CredentialVault, session: AsyncSession, row: TenantCredential,
                 credential: Credential) -> None:
        self._vault, self._session, self._row = vault, session, row
        self.credential = credential
        self.replaced: Credential | None = None

    async def replace(self, secret: dict[str, Any], *, expires_at: datetime | None) -> Credential:
        self.replaced = await self._vault._write(self._session, self._row, secret, expires_at=expires_at,
                                                 rotated_at=utcnow())
        return self.replaced


def env_key_for(settings: Settings, *, kms_configured: bool) -> EnvKey | None:
    """The env key, or None when KMS carries every row and no env key is set; raises CredentialKeyError.

    Processes call this at startup (`crm-sor api|worker`) so a bad key stops them with a clear message.
    """
    try:
        return load_env_key(settings)
    except CredentialKeyError:
        if kms_configured and settings.credential_encryption_key is None:
            return None
        raise


class CredentialVault:
    """Encrypted tenant credentials. Every successful decrypt writes an audit row naming the actor."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], sealer: Sealer, audit: AuditTrail, *,
                 cache_seconds: float = CONFIG_TTL_SECONDS) -> None:
        self._sessions, self.sealer, self.audit = sessions, sealer, audit
        # Opened credentials by (tenant, provider): see `opened()`.
        self.cache: TtlCache[Credential] = TtlCache(cache_seconds)

    @classmethod
    def from_settings(cls, settings: Settings, sessions: async_sessionmaker[AsyncSession], *,
                      kms: KmsEnvelope | None = None) -> CredentialVault:
        """The vault for this process: env key from settings, KMS when `CRM_KMS__KEY_ID` is set.

        A deployment with KMS may run without the env key once every row is re-wrapped; without KMS the
        env key is required (`load_env_key` raises CredentialKeyError outside dev).
        """
        if kms is None and settings.kms.key_id:
            kms = KmsEnvelope.from_settings(settings.kms)
        return cls(sessions, Sealer(env_key_for(settings, kms_configured=kms is not None), kms),
                   AuditTrail(sessions))

    # ----- reads -------------------------------------------------------------------------------

    async def load(self, tenant_id: uuid.UUID, actor: Actor, provider: str | None = None) -> Credential:
        """Decrypt the tenant's credential as `actor` (audited as `credential.decrypt`)."""
        async with self._sessions() as session:
            row = await self._find(session, tenant_id, provider)
        credential = await self._decrypt(row)
        await self._audit_decrypt(actor, credential)
        return credential

    async def opened(self, tenant_id: uuid.UUID, actor: Actor, provider: str
                     ) -> tuple[Credential, asyncio.Task[bool] | None]:
        """The credential for opening a driver, and the audit write still running for it (None: already written).

        This process's copy decrypted within the last few seconds, its audit row (`cached: true`) being written
        as `actor` — the caller awaits that task before using the credential; else `load()` (a real decrypt,
        audited before it returns).
        """
        decrypted = False

        async def load() -> Credential:
            nonlocal decrypted
            decrypted = True
            return await self.load(tenant_id, actor, provider=provider)

        credential = await self.cache.get((tenant_id, provider), load)
        if decrypted:
            return credential, None
        return credential, self.audit.record_soon(actor, tenant_id, "credential.decrypt",
                                                  _decrypt_details(credential) | {"cached": True})

    async def _find(self, session: AsyncSession, tenant_id: uuid.UUID, provider: str | None) -> TenantCredential:
        query = select(TenantCredential).where(TenantCredential.tenant_id == tenant_id)
        if provider is not None:
            query = query.where(TenantCredential.provider == provider)
        row = (await session.execute(query.execution_options(populate_existing=True))).scalars().first()
        if row is None:
            raise CredentialNotFoundError(f"tenant {tenant_id} has no stored credential")
        return row

    async def _decrypt(self, row: TenantCredential) -> Credential:
        try:
            secret = json.loads(await self.sealer.open(row_ref(row), row_sealed(row)))
        except Exception:
            telemetry.DECRYPTS.labels(row.provider, "failed").inc()
            raise
        telemetry.DECRYPTS.labels(row.provider, "ok").inc()
        return Credential(id=row.id, tenant_id=row.tenant_id, provider=row.provider, version=row.version,
                          scheme=row.scheme, expires_at=row.expires_at, rotated_at=row.rotated_at,
                          needs_reconnect=row.needs_reconnect, secret=secret)

    async def _audit_decrypt(self, actor: Actor, credential: Credential) -> None:
        await self.audit.record(actor, credential.tenant_id, "credential.decrypt", _decrypt_details(credential))

    # ----- writes ------------------------------------------------------------------------------

    async def store(self, tenant_id: uuid.UUID, provider: str, secret: dict[str, Any], *, actor: Actor,
                    expires_at: datetime | None = None) -> Credential:
        """Create or replace the tenant's credential (a (re)connect): clears `needs_reconnect`."""
        for _ in range(2):  # a concurrent first insert loses the unique constraint once, then replaces
            try:
                async with self._locked_row(tenant_id, provider) as (session, row):
                    if row is None:
                        row = TenantCredential(id=uuid.uuid4(), tenant_id=tenant_id, provider=provider, version=0)
                        session.add(row)
                    stored = await self._write(session, row, secret, expires_at=expires_at, rotated_at=None)
            except IntegrityError:
                continue
            self.cache.invalidate(tenant_id)  # committed: a (re)connect is used at once
            await self.audit.record(actor, tenant_id, "credential.store",
                                    {"credential_id": str(stored.id), "provider": provider, "scheme": stored.scheme,
                                     "version": stored.version})
            return stored
        raise StaleCredentialError(f"tenant {tenant_id}: credential row kept changing during store")

    @asynccontextmanager
    async def locked(self, tenant_id: uuid.UUID, provider: str, actor: Actor) -> AsyncIterator[LockedCredential]:
        """Hold the credential's row lock across processes; the decrypt and any replace are audited after."""
        locked: LockedCredential | None = None
        try:
            async with self._locked_row(tenant_id, provider) as (session, row):
                if row is None:
                    raise CredentialNotFoundError(f"tenant {tenant_id} has no stored {provider} credential")
                locked = LockedCredential(self, session, row, await self._decrypt(row))
                yield locked
        finally:
            if locked is not None:  # the decrypt happened, whatever the body did with it
                if locked.replaced is not None:  # committed (or rolled back: forgetting is harmless either way)
                    self.cache.invalidate(tenant_id)
                await self._audit_decrypt(actor, locked.credential)
        if locked.replaced is not None:
            await self.audit.record(actor, tenant_id, "credential.rotate",
                                    {"credential_id": str(locked.replaced.id), "provider": provider,
                                     "scheme": locked.replaced.scheme, "version": locked.replaced.version})

    @asynccontextmanager
    async def _locked_row(self, tenant_id: uuid.UUID, provider: str
                          ) -> AsyncIterator[tuple[AsyncSession, TenantCredential | None]]:
        async with self._sessions() as session, session.begin():
            # Write first: this statement is the lock (row lock on PostgreSQL, write lock on SQLite).
            await session.execute(
                update(TenantCredential)
                .where(TenantCredential.tenant_id == tenant_id, TenantCredential.provider == provider)
                .values(version=TenantCredential.version)
                .execution_options(synchronize_session=False)
            )
            try:
                row: TenantCredential | None = await self._find(session, tenant_id, provider)
            except CredentialNotFoundError:
                row = None
            yield session, row

    async def _write(self, session: AsyncSession, row: TenantCredential, secret: dict[str, Any], *,
                     expires_at: datetime | None, rotated_at: datetime | None, scheme: str | None = None,
                     rewrap_only: bool = False) -> Credential:
        sealed = await self.sealer.seal(row_ref(row), _encode(secret), scheme)
        # New secret material means the connection works again; a mere re-wrap changes nothing else.
        needs_reconnect = bool(row.needs_reconnect) if rewrap_only else False
        values: dict[str, Any] = {
            "scheme": sealed.scheme, "key_version": sealed.key_version, "nonce": sealed.nonce,
            "ciphertext": sealed.ciphertext, "wrapped_key": sealed.wrapped_key, "expires_at": expires_at,
            "needs_reconnect": needs_reconnect, "version": row.version + 1,
        }
        if rotated_at is not None:
            values["rotated_at"] = rotated_at
        if row.version == 0:  # a new row: insert it as built
            for name, value in values.items():
                setattr(row, name, value)
            await session.flush()
        else:
            result = await session.execute(
                update(TenantCredential)
                .where(TenantCredential.id == row.id, TenantCredential.version == row.version)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if getattr(result, "rowcount", 0) != 1:
                raise StaleCredentialError(f"credential {row.id} changed since version {row.version}")
        return Credential(id=row.id, tenant_id=row.tenant_id, provider=row.provider, version=values["version"],
                          scheme=sealed.scheme, expires_at=expires_at, rotated_at=rotated_at or row.rotated_at,
                          needs_reconnect=needs_reconnect, secret=dict(secret))

    async def mark_needs_reconnect(self, credential: Credential, actor: Actor) -> bool:
        """Flag the connection for a human to reconnect, unless the row changed since `credential` was read."""
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(TenantCredential)
                .where(TenantCredential.id == credential.id, TenantCredential.version == credential.version)
                .values(needs_reconnect=True, version=credential.version + 1)
                .execution_options(synchronize_session=False)
            )
        marked = getattr(result, "rowcount", 0) == 1
        if marked:
            self.cache.invalidate(credential.tenant_id)
            await self.audit.record(actor, credential.tenant_id, "credential.needs_reconnect",
                                    {"credential_id": str(credential.id), "provider": credential.provider})
        return marked

    # ----- backfill: env rows re-wrapped under KMS ----------------------------------------------

    async def env_row_ids(self, after: uuid.UUID | None, limit: int) -> list[uuid.UUID]:
        query = select(TenantCredential.id).where(TenantCredential.scheme == "env").order_by(TenantCredential.id)
        if after is not None:
            query = query.where(TenantCredential.id > after)
        async with self._sessions() as session:
            return list((await session.execute(query.limit(limit))).scalars())

    async def rewrap_to_kms(self, row_id: uuid.UUID, actor: Actor) -> bool:
        """Re-encrypt one env row under a fresh KMS data key; False when it is already kms (idempotent)."""
        async with self._sessions() as session:
            found = await session.get(TenantCredential, row_id)
            if found is None:
                return False
            tenant_id, provider = found.tenant_id, found.provider
        async with self._locked_row(tenant_id, provider) as (session, row):
            if row is None or row.id != row_id or row.scheme == "kms":
                return False
            credential = await self._decrypt(row)
            # Same blob, same expiry; only the wrapping changes, so readers see no difference.
            await self._write(session, row, credential.secret, expires_at=row.expires_at, rotated_at=None,
                              scheme="kms", rewrap_only=True)
        self.cache.invalidate(tenant_id)
        await self.audit.record(actor, tenant_id, "credential.rewrap",
                                {"credential_id": str(row_id), "provider": provider, "scheme": "kms"})
        return True
