"""The phone index: normalized phone -> the CRM record we last saw carrying it, for voice-grade lookups.

A caller's number is looked up before the agent greets them. A CRM search is slow, separately rate-limited and
eventually consistent (a contact created seconds ago is not searchable yet), so whenever we create or read a
CRM record with a phone we remember phone -> external id here; the next call for that number is one `get` by
id instead of a search, and a contact we just created is found at once despite the provider's search lag.

No phone is stored: `phone_hash` is HMAC-SHA256 of the E.164 number under a per-tenant key derived from
`settings.subject_hash_key` (the same number hashes differently in two tenants, and a hash cannot be reversed
by enumerating numbers without the key). The mapping is still derived from customer content, so the table is
class (c) with a window: a row is "synced" by construction (it records what the CRM holds), `purge_after` is
its TTL, the sweep purges it through the same guarded statement as every class-(c) row, and an erasure deletes
the subject's rows by phone hash and by CRM id. Entries are dropped when their record is updated, deleted or
found not to carry the number any more; a stale entry costs one `get`, never a wrong answer (callers verify).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Index, String, UniqueConstraint, bindparam, delete, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from store import hot
from store.base import Base, ContentRow, SyncState, utcnow

RETENTION_DAYS = 30  # the table's window: no entry outlives it, whatever the configured TTL


class PhoneIndexEntry(ContentRow, Base):
    """One (tenant, provider, phone hash) -> CRM record id; `crm_external_id` is the record, `purge_after` the TTL."""

    __tablename__ = "phone_index"
    __table_args__ = (UniqueConstraint("tenant_id", "provider", "phone_hash", name="uq_phone_index_phone"),
                      Index("ix_phone_index_record", "tenant_id", "provider", "crm_external_id"),
                      {"info": {"data_class": "c", "retention_days": RETENTION_DAYS}})

    provider: Mapped[str] = mapped_column(String(64))
    object: Mapped[str] = mapped_column(String(16))  # the canonical object (customer | lead) the id belongs to
    phone_hash: Mapped[str] = mapped_column(String(64))


@lru_cache(maxsize=4096)
def tenant_index_key(subject_hash_key: str, tenant_id: uuid.UUID) -> bytes:
    return hmac.new(subject_hash_key.encode(), b"crm-sor/phone-index/v1\x00" + tenant_id.bytes,
                    hashlib.sha256).digest()


def phone_hash(subject_hash_key: str, tenant_id: uuid.UUID, e164: str) -> str:
    return hmac.new(tenant_index_key(subject_hash_key, tenant_id), e164.encode(), hashlib.sha256).hexdigest()


# Built once: a voice lookup runs it on every call, and building the statement costs as much as running it.
_RECALL = select(PhoneIndexEntry.crm_external_id).where(
    PhoneIndexEntry.tenant_id == bindparam("tenant_id"), PhoneIndexEntry.provider == bindparam("provider"),
    PhoneIndexEntry.phone_hash == bindparam("phone_hash"), PhoneIndexEntry.purge_after > bindparam("now"))


def _insert(dialect: str) -> Any:
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(PhoneIndexEntry)


class PhoneIndex:
    """The index for one process: hashing key, TTL and the sessions it writes with."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], subject_hash_key: str,
                 ttl: timedelta = timedelta(days=7)) -> None:
        self._sessions, self._key = sessions, subject_hash_key
        self.ttl = min(ttl, timedelta(days=RETENTION_DAYS))

    def _connection(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """An autocommit connection: the index's reads and upserts are single statements."""
        return hot.autocommit(self._sessions.kw["bind"])

    def hash(self, tenant_id: uuid.UUID, e164: str) -> str:
        return phone_hash(self._key, tenant_id, e164)

    async def recall(self, tenant_id: uuid.UUID, provider: str, e164: str) -> str | None:
        """The CRM id last seen with this number, unless its entry expired (a caller waits: store/hot.py)."""
        found: str | None = await hot.scalar(self._sessions.kw["bind"], _RECALL, {
            "tenant_id": tenant_id, "provider": provider, "phone_hash": self.hash(tenant_id, e164), "now": utcnow()})
        return found

    async def recall_many(self, tenant_id: uuid.UUID, provider: str, e164s: Sequence[str]) -> dict[str, str]:
        """`recall` for many numbers in one statement: E.164 -> CRM id, for the numbers with a live entry."""
        hashes = {self.hash(tenant_id, e164): e164 for e164 in e164s}
        if not hashes:
            return {}
        async with self._connection() as connection:
            rows = await connection.execute(select(PhoneIndexEntry.phone_hash, PhoneIndexEntry.crm_external_id).where(
                PhoneIndexEntry.tenant_id == tenant_id, PhoneIndexEntry.provider == provider,
                PhoneIndexEntry.phone_hash.in_(list(hashes)), PhoneIndexEntry.purge_after > utcnow()))
            return {hashes[phone_hash]: str(external_id) for phone_hash, external_id in rows if external_id}

    async def remember(self, tenant_id: uuid.UUID, provider: str, object: str, e164: str, external_id: str) -> None:
        """Record (or refresh) phone -> record; the latest record seen with a number wins."""
        now = utcnow()
        values = {"crm_external_id": external_id, "object": object, "synced_at": now, "updated_at": now,
                  "purge_after": now + self.ttl}
        async with self._connection() as connection:
            await connection.execute(_insert(connection.dialect.name).values(
                id=uuid.uuid4(), tenant_id=tenant_id, provider=provider, phone_hash=self.hash(tenant_id, e164),
                created_at=now, sync_state=SyncState.SYNCED.value, sync_attempts=0, **values,
            ).on_conflict_do_update(index_elements=["tenant_id", "provider", "phone_hash"], set_=values))

    async def forget_record(self, tenant_id: uuid.UUID, provider: str, external_id: str) -> int:
        """Drop every number pointing at a record (it was updated, deleted or no longer carries them)."""
        async with self._sessions() as session, session.begin():
            return await forget(session, tenant_id, external_ids=[external_id], provider=provider)

    async def forget_phone(self, tenant_id: uuid.UUID, e164: str) -> int:
        async with self._sessions() as session, session.begin():
            return await forget(session, tenant_id, phone_hashes=[self.hash(tenant_id, e164)])


async def forget(session: AsyncSession, tenant_id: uuid.UUID, *, phone_hashes: Sequence[str] = (),
                 external_ids: Sequence[str] = (), provider: str | None = None) -> int:
    """Delete a tenant's entries matching any of the hashes or record ids (erasure, invalidation); count."""
    match = ([PhoneIndexEntry.phone_hash.in_(list(phone_hashes))] if phone_hashes else []) + (
        [PhoneIndexEntry.crm_external_id.in_(list(external_ids))] if external_ids else [])
    if not match:
        return 0
    statement = delete(PhoneIndexEntry).where(PhoneIndexEntry.tenant_id == tenant_id, or_(*match))
    if provider is not None:
        statement = statement.where(PhoneIndexEntry.provider == provider)
    result = await session.execute(statement.execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)


async def purge_expired(session: AsyncSession, as_of: datetime, limit: int) -> int:
    """The sweep's purge of entries past their TTL (one bounded batch); the class-(c) guard is in the SQL."""
    chosen = select(PhoneIndexEntry.id).where(
        PhoneIndexEntry.sync_state == SyncState.SYNCED.value, PhoneIndexEntry.crm_external_id.is_not(None),
        PhoneIndexEntry.purge_after.is_not(None), PhoneIndexEntry.purge_after <= as_of,
    ).order_by(PhoneIndexEntry.purge_after).limit(limit)
    result = await session.execute(delete(PhoneIndexEntry).where(PhoneIndexEntry.id.in_(chosen.scalar_subquery()))
                                   .execution_options(synchronize_session=False))
    return int(getattr(result, "rowcount", 0) or 0)
