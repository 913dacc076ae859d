"""The erasure store pieces on the real database: keyed subject hash, sealed identifiers, subject
resolution across every class-(c) table, the scrub, and the mirror guard the lifecycle calls."""

from __future__ import annotations

import uuid

import pytest
from cryptography.exceptions import InvalidTag
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from settings import Settings
from store import erasure_requests as requests
from store.erasure import (
    Subject,
    erasure_blocks_mirror,
    hold_rows,
    resolve_subject_rows,
    scrub_rows,
    subject_hash,
)
from store.models import Customer, ErasureRequest, Message, QualificationState
from tests.integration.forget_support import EMAIL, PHONE, SandboxDrivers, count_rows, create_request, seed_subject


def test_subject_hash_is_keyed_per_tenant_and_stable() -> None:
    tenant, subject = uuid.uuid4(), Subject(phone=PHONE, email=EMAIL)
    first = subject_hash(b"key-one", tenant, subject)
    assert first == subject_hash(b"key-one", tenant, Subject(phone=PHONE, email=EMAIL))
    assert len(first) == 64 and int(first, 16) >= 0
    assert first != subject_hash(b"key-two", tenant, subject)
    assert first != subject_hash(b"key-one", uuid.uuid4(), subject)
    assert first != subject_hash(b"key-one", tenant, Subject(phone=PHONE))


async def test_sealed_identifiers_open_only_on_their_own_row_and_key(
        settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    subject = Subject(phone=PHONE, email=EMAIL, external_id="1001", customer_id=uuid.uuid4())
    forget = await create_request(sessions, settings, uuid.uuid4(), subject)
    key = requests.sealing_key(settings.subject_hash_key.get_secret_value())
    async with sessions() as session:
        row = await requests.load_request(session, forget.request_id)
    assert row.sealed_identifiers is not None and PHONE.encode() not in row.sealed_identifiers
    assert EMAIL.encode() not in row.sealed_identifiers
    assert requests.open_subject(key, row) == subject
    copied = ErasureRequest(id=uuid.uuid4(), tenant_id=row.tenant_id, subject_hash=row.subject_hash,
                            requested_by="x", sealed_identifiers=row.sealed_identifiers)
    with pytest.raises(InvalidTag):
        requests.open_subject(key, copied)
    with pytest.raises(InvalidTag):
        requests.open_subject(requests.sealing_key("another secret"), row)


@pytest.mark.parametrize("by", ["phone", "email", "external_id", "customer_id"])
async def test_any_one_identifier_resolves_every_row_of_the_subject_and_nothing_else(
        sessions: async_sessionmaker[AsyncSession], by: str) -> None:
    drivers = SandboxDrivers()
    seeded = await seed_subject(sessions, drivers)
    foreign = await seed_subject(sessions, drivers)  # the same person's phone and email at another tenant
    identifiers = {"phone": Subject(phone=PHONE), "email": Subject(email=EMAIL.lower()),
                   "external_id": Subject(external_id=seeded.crm["contact"][1]),
                   "customer_id": Subject(customer_id=seeded.customer_id)}
    async with sessions() as session:
        rows = await resolve_subject_rows(session, seeded.tenant_id, identifiers[by])
    assert {table: sorted(ids) for table, ids in rows.items()} == {
        table: sorted(ids) for table, ids in seeded.rows.items()}
    everything = {row_id for ids in rows.values() for row_id in ids}
    assert seeded.other_customer_id not in everything
    assert not everything & {row_id for ids in foreign.rows.values() for row_id in ids}


async def test_scrub_removes_synced_and_unsynced_rows_of_the_subject_only(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    seeded = await seed_subject(sessions, SandboxDrivers())
    async with sessions() as session:
        states = {row.sync_state for row in (await session.execute(
            select(Message).where(Message.id.in_(seeded.rows["messages"])))).scalars()}
    assert states == {"pending"}  # the seed's messages were never mirrored
    async with sessions() as session, session.begin():
        counts = await scrub_rows(session, seeded.tenant_id, seeded.rows)
    assert counts == {table: len(ids) for table, ids in seeded.rows.items()}
    assert await count_rows(sessions, seeded.rows) == 0
    async with sessions() as session:
        assert await session.get(Customer, seeded.other_customer_id) is not None


async def test_the_mirror_guard_blocks_held_rows_their_children_and_gone_rows(
        sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    seeded = await seed_subject(sessions, SandboxDrivers())
    tenant = seeded.tenant_id
    conversation, lead = seeded.rows["conversations"][0], seeded.rows["leads"][0]
    async with sessions() as session:
        assert not await erasure_blocks_mirror(session, tenant, "customers", seeded.customer_id)
    forget = await create_request(sessions, settings, tenant, Subject(email=EMAIL))
    async with sessions() as session, session.begin():
        await hold_rows(session, forget.request_id, tenant, {"customers": [seeded.customer_id]})
        # Rows that arrive after the hold: only their parents are held.
        late_message = Message(tenant_id=tenant, conversation_id=conversation, turn_id="late", role="customer",
                               text="one more thing")
        session.add(late_message)
        await session.flush()
        await session.execute(delete(QualificationState).where(QualificationState.lead_id == lead))
        late_state = QualificationState(tenant_id=tenant, lead_id=lead, stage="late")
        session.add(late_state)
        await session.flush()
    async with sessions() as session:
        assert await erasure_blocks_mirror(session, tenant, "customers", seeded.customer_id)
        assert await erasure_blocks_mirror(session, tenant, "conversations", conversation)  # its customer
        assert await erasure_blocks_mirror(session, tenant, "messages", late_message.id)  # via its conversation
        assert await erasure_blocks_mirror(session, tenant, "qualification_states", late_state.id)  # via its lead
        assert await erasure_blocks_mirror(session, tenant, "cases", uuid.uuid4())  # gone: nothing to write
        assert not await erasure_blocks_mirror(session, tenant, "customers", seeded.other_customer_id)
        assert not await erasure_blocks_mirror(session, tenant, "no_such_table", seeded.customer_id)


async def test_reopen_needs_a_finished_request_with_something_to_retry(
        sessions: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    seeded = await seed_subject(sessions, SandboxDrivers())
    forget = await create_request(sessions, settings, seeded.tenant_id, Subject(email=EMAIL))
    async with sessions() as session, session.begin():
        assert await requests.reopen(session, forget.request_id, seeded.tenant_id) is None  # running
        request = await requests.load_request(session, forget.request_id)
        await requests.add_targets(session, request.id, "hubspot", [("customer", "1", "local")])
        status, _ = await requests.finish(session, request)
    assert status == "needs_attention"  # a pending target is left
    async with sessions() as session, session.begin():
        assert await requests.reopen(session, forget.request_id, uuid.uuid4()) is None  # another tenant's
        reopened = await requests.reopen(session, forget.request_id, seeded.tenant_id)
        assert reopened is not None and reopened.status == "running" and reopened.completed_at is None
