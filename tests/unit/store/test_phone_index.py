"""The phone index in the real database: keyed hashes only, TTL, invalidation, the guarded purge, erasure."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.base import utcnow
from store.phone_index import PhoneIndex, PhoneIndexEntry, forget, phone_hash, purge_expired

KEY = "test-subject-hash-key"
PHONE = "+971501234567"


def _index(sessions: async_sessionmaker[AsyncSession], ttl: timedelta = timedelta(days=7)) -> PhoneIndex:
    return PhoneIndex(sessions, KEY, ttl)


async def _rows(sessions: async_sessionmaker[AsyncSession], tenant: uuid.UUID) -> list[PhoneIndexEntry]:
    async with sessions() as session:
        return list(await session.scalars(select(PhoneIndexEntry).where(PhoneIndexEntry.tenant_id == tenant)))


async def test_remembers_a_number_as_a_keyed_hash_never_in_clear(sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant, other = uuid.uuid4(), uuid.uuid4()
    index = _index(sessions)
    await index.remember(tenant, "hubspot", "customer", PHONE, "1001")
    await index.remember(other, "hubspot", "customer", PHONE, "2002")
    assert await index.recall(tenant, "hubspot", PHONE) == "1001"
    assert await index.recall(other, "hubspot", PHONE) == "2002"
    assert await index.recall(tenant, "salesforce", PHONE) is None
    (row,) = await _rows(sessions, tenant)
    stored = " ".join(str(getattr(row, c.name)) for c in PhoneIndexEntry.__table__.columns)
    assert "501234567" not in stored  # no digits of the number in any column
    assert row.phone_hash == phone_hash(KEY, tenant, PHONE) != phone_hash(KEY, other, PHONE)  # per-tenant key
    assert row.sync_state == "synced" and row.crm_external_id == "1001" and row.purge_after is not None


async def test_the_latest_record_seen_with_a_number_wins(sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = uuid.uuid4()
    index = _index(sessions)
    await index.remember(tenant, "hubspot", "customer", PHONE, "1001")
    await index.remember(tenant, "hubspot", "customer", PHONE, "1002")
    assert await index.recall(tenant, "hubspot", PHONE) == "1002"
    assert len(await _rows(sessions, tenant)) == 1


async def test_an_expired_entry_is_not_recalled_and_the_sweep_purges_it(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = uuid.uuid4()
    index = _index(sessions)
    await index.remember(tenant, "hubspot", "customer", PHONE, "1001")
    await index.remember(tenant, "hubspot", "customer", "+966551234567", "1002")
    async with sessions.begin() as session:
        await session.execute(update(PhoneIndexEntry).where(
            PhoneIndexEntry.tenant_id == tenant, PhoneIndexEntry.crm_external_id == "1001").values(
            purge_after=utcnow() - timedelta(seconds=1)))
    assert await index.recall(tenant, "hubspot", PHONE) is None
    async with sessions.begin() as session:
        assert await purge_expired(session, utcnow(), limit=10_000) >= 1
    assert [r.crm_external_id for r in await _rows(sessions, tenant)] == ["1002"]


def test_no_ttl_outlives_the_table_window(sessions: async_sessionmaker[AsyncSession]) -> None:
    assert _index(sessions, timedelta(days=365)).ttl == timedelta(days=30)
    assert PhoneIndexEntry.__table__.info == {"data_class": "c", "retention_days": 30}


async def test_a_record_or_a_number_is_forgotten(sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = uuid.uuid4()
    index = _index(sessions)
    await index.remember(tenant, "hubspot", "customer", PHONE, "1001")
    await index.remember(tenant, "hubspot", "customer", "+14155552671", "1001")  # mobile and phone: one record
    await index.remember(tenant, "hubspot", "customer", "+966551234567", "1002")
    assert await index.forget_record(tenant, "hubspot", "1001") == 2
    assert await index.recall(tenant, "hubspot", PHONE) is None
    assert await index.forget_phone(tenant, "+966551234567") == 1
    assert await _rows(sessions, tenant) == []


async def test_erasure_deletes_by_hash_or_record_id(sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = uuid.uuid4()
    index = _index(sessions)
    await index.remember(tenant, "hubspot", "customer", PHONE, "1001")
    await index.remember(tenant, "hubspot", "customer", "+966551234567", "1002")
    await index.remember(tenant, "hubspot", "customer", "+14155552671", "1003")
    async with sessions.begin() as session:
        deleted = await forget(session, tenant, phone_hashes=[index.hash(tenant, PHONE)], external_ids=["1002"])
    assert deleted == 2
    assert [r.crm_external_id for r in await _rows(sessions, tenant)] == ["1003"]
