"""The purge statement itself refuses rows the CRM does not hold; sync marks are compare-and-set."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store import content
from store.models import Conversation, Customer, ErasureHold, ErasureRequest, Message

NOW = datetime(2026, 6, 1, tzinfo=UTC)
PAST, FUTURE = NOW - timedelta(minutes=1), NOW + timedelta(minutes=1)


def _customer(tenant: uuid.UUID, **sync: object) -> Customer:
    return Customer(id=uuid.uuid4(), tenant_id=tenant, name="x", sync_attempts=0, **sync)


async def test_purge_takes_only_synced_rows_past_their_window(sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = uuid.uuid4()
    rows = {
        "due": _customer(tenant, sync_state="synced", crm_external_id="1", synced_at=PAST, purge_after=PAST),
        "pending": _customer(tenant, sync_state="pending", crm_external_id="2", synced_at=PAST, purge_after=PAST),
        "failed": _customer(tenant, sync_state="failed", purge_after=PAST),
        "no_crm_id": _customer(tenant, sync_state="synced", crm_external_id=None, synced_at=PAST, purge_after=PAST),
        "not_yet": _customer(tenant, sync_state="synced", crm_external_id="3", synced_at=PAST, purge_after=FUTURE),
        "no_window": _customer(tenant, sync_state="synced", crm_external_id="4", synced_at=PAST, purge_after=None),
    }
    async with sessions() as session, session.begin():
        session.add_all(rows.values())
    ids = [row.id for row in rows.values()]
    async with sessions() as session, session.begin():
        assert await content.purge(session, "customers", NOW, row_ids=ids) == 1
    async with sessions() as session:
        left = {name for name, row in rows.items() if await session.get(Customer, row.id) is not None}
    assert left == set(rows) - {"due"}


async def test_a_row_held_by_an_erasure_is_not_purged(sessions: async_sessionmaker[AsyncSession]) -> None:
    # The erasure owns its rows until its scrub (it reads their CRM ids first); the purge leaves them alone.
    tenant = uuid.uuid4()
    synced = {"sync_state": "synced", "crm_external_id": "1", "synced_at": PAST, "purge_after": PAST}
    held, free = _customer(tenant, **synced), _customer(tenant, **synced)
    request = ErasureRequest(id=uuid.uuid4(), tenant_id=tenant, subject_hash="0" * 64, requested_by="test")
    async with sessions() as session, session.begin():
        session.add_all([held, free, request])
    async with sessions() as session, session.begin():
        session.add(ErasureHold(request_id=request.id, tenant_id=tenant, table_name="customers", row_id=held.id))
    for batched in (None, 10):  # the targeted purge and the sweep's batched one share the guard
        async with sessions() as session, session.begin():
            await content.purge(session, "customers", NOW, tenant_id=tenant, limit=batched)
    async with sessions() as session:
        assert await session.get(Customer, held.id) is not None
        assert await session.get(Customer, free.id) is None


async def test_batches_past_the_prepared_plan_still_take_only_purgeable_rows(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    # PostgreSQL switches a statement prepared five times to a generic plan: the guard must hold in both.
    tenant = uuid.uuid4()
    due = [_customer(tenant, sync_state="synced", crm_external_id=str(i), synced_at=PAST, purge_after=PAST)
           for i in range(24)]
    kept = [_customer(tenant, sync_state=state, crm_external_id="k", synced_at=PAST, purge_after=PAST)
            for state in ("pending", "failed")] + [
            _customer(tenant, sync_state="synced", crm_external_id="k", synced_at=PAST, purge_after=FUTURE)]
    async with sessions() as session, session.begin():
        session.add_all(due + kept)
    batches = []
    while not batches or batches[-1] == 2:
        async with sessions() as session, session.begin():
            batches.append(await content.purge(session, "customers", NOW, tenant_id=tenant, limit=2))
    assert batches == [2] * 12 + [0]
    async with sessions() as session:
        assert all([await session.get(Customer, row.id) is not None for row in kept])
        assert not any([await session.get(Customer, row.id) is not None for row in due])


async def test_a_conversation_waits_for_its_messages(sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = uuid.uuid4()
    synced = {"sync_state": "synced", "crm_external_id": "n1", "synced_at": PAST, "purge_after": PAST}
    conversation = Conversation(id=uuid.uuid4(), tenant_id=tenant, sync_attempts=0, **synced)
    message = Message(id=uuid.uuid4(), tenant_id=tenant, conversation_id=conversation.id, turn_id="1",
                      role="agent", text="hello", sync_attempts=0, sync_state="pending")
    async with sessions() as session, session.begin():
        session.add_all([conversation, message])
    async with sessions() as session, session.begin():
        assert await content.purge(session, "conversations", NOW, row_ids=[conversation.id]) == 0
        assert await content.purge(session, "messages", NOW, conversation_id=conversation.id) == 0
    async with sessions() as session, session.begin():
        await session.execute(update(Message).where(Message.id == message.id).values(**synced))
    async with sessions() as session, session.begin():
        assert await content.purge(session, "messages", NOW, conversation_id=conversation.id) == 1
        assert await content.purge(session, "conversations", NOW, row_ids=[conversation.id]) == 1


async def test_batched_purge_respects_its_limit(sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = uuid.uuid4()
    async with sessions() as session, session.begin():
        session.add_all([_customer(tenant, sync_state="synced", crm_external_id=str(i), synced_at=PAST,
                                   purge_after=PAST) for i in range(5)])
    async with sessions() as session, session.begin():
        assert await content.purge(session, "customers", NOW, tenant_id=tenant, limit=3) == 3
        assert await content.purge(session, "customers", NOW, tenant_id=tenant, limit=3) == 2


async def test_mark_synced_refuses_a_row_changed_during_the_write(sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = uuid.uuid4()
    row = _customer(tenant, sync_state="pending")
    async with sessions() as session, session.begin():
        session.add(row)
    async with sessions() as session:
        seen = await content.load(session, "customers", tenant, row.id)  # what the CRM write was built from
    async with sessions() as session, session.begin():
        assert await content.touch_pending(session, "customers", tenant, row.id, {"name": "changed"})
    async with sessions() as session, session.begin():
        assert not await content.mark_synced(session, "customers", seen, "ext", NOW, timedelta(days=30))
    async with sessions() as session:
        fresh = await content.load(session, "customers", tenant, row.id)
    assert fresh is not None and fresh.sync_state == "pending" and fresh.purge_after is None
    async with sessions() as session, session.begin():
        assert await content.mark_synced(session, "customers", fresh, "ext", NOW, timedelta(days=30))
    async with sessions() as session:
        done = await content.load(session, "customers", tenant, row.id)
    assert done is not None and (done.sync_state, done.purge_after) == ("synced", NOW + timedelta(days=30))


def test_retention_comes_from_the_schema_unless_settings_override() -> None:
    assert content.retention_days("messages") == 7 and content.retention_days("cases") == 90
    assert content.retention_days("customers") == 30
    assert content.retention_days("messages", {"messages": 3}) == 3
