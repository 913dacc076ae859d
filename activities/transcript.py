"""Transcripts in a mirror pass: a conversation is ONE note on its customer's CRM record, appended in chunks.

Each chunk is named by its last message's turn (`{conversation}:{turn}`), and the driver finds a chunk's marker
anywhere in the note, so a chunk written by a pass that died before recording it is never appended twice. The
closing lines (end time, summary) are keyed by their text: appended once, and again only when they change.
Message rows are marked synced once the CRM holds them, and the conversation (compare-and-set) once none waits.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.crm_plan import DependencyPendingError
from activities.crm_write import ACCOUNT_WIDE, note_once, row_key
from activities.tally import Tally, each
from activities.types import MirrorPassInput
from drivers.base import BaseDriver
from drivers.errors import DriverError
from store import content
from store.base import SyncState
from store.erasure import erasure_blocks_mirror
from store.models import Conversation, Customer, Message

SYNCED = SyncState.SYNCED.value
MESSAGES_PER_PASS = 500  # of one conversation; the rest next pass (the conversation stays due)


def header(conversation: Conversation) -> str:
    started = conversation.started_at.strftime("%Y-%m-%d %H:%M UTC")
    return f"Conversation transcript ({conversation.channel}), started {started}"


def render(messages: list[Message]) -> str:
    return "\n".join(f"[{m.spoken_at.strftime('%H:%M:%S')}] {m.role}: {m.text}" for m in messages)


def closing(conversation: Conversation) -> str:
    lines = []
    if conversation.ended_at is not None:
        lines.append(f"Ended {conversation.ended_at.strftime('%Y-%m-%d %H:%M UTC')}")
    if conversation.summary:
        lines.append(f"Summary: {conversation.summary}")
    return "\n".join(lines)


async def mirror_transcripts(sessions: async_sessionmaker[AsyncSession], driver: BaseDriver, input: MirrorPassInput,
                             now: datetime, tally: Tally, clock: Callable[[], datetime]) -> None:
    async with sessions() as session:
        conversations = await content.due_rows(session, "conversations", input.tenant_id, now, input.batch_size)

    async def one(conversation: Conversation) -> None:
        if tally.stop is None:  # an account-wide failure stops the conversations not yet started
            await _one(sessions, driver, input, conversation, tally, clock)

    await each(conversations, one)


async def _one(sessions: async_sessionmaker[AsyncSession], driver: BaseDriver, input: MirrorPassInput,
               conversation: Conversation, tally: Tally, clock: Callable[[], datetime]) -> None:
    tenant = input.tenant_id
    async with sessions() as session:
        customer = await session.get(Customer, conversation.customer_id) if conversation.customer_id else None
        batch = await _unsynced(session, conversation.id, MESSAGES_PER_PASS)
        held = await erasure_blocks_mirror(session, tenant, "conversations", conversation.id)
    if held:
        tally.failures.append(("conversations", conversation, LookupError("erasure_hold")))
        return
    written: list[Message] = []
    try:
        note_id = await _write(sessions, driver, tenant, conversation, customer, batch, written,
                               input.transcript_chunk)
    except (DriverError, DependencyPendingError) as exc:
        tally.failures.append(("conversations", conversation, exc))
        if isinstance(exc, ACCOUNT_WIDE):
            tally.stop = exc
        note_id = None
    now = clock()
    window = input.retention.get("conversations") or content.retention("conversations")
    message_window = input.retention.get("messages") or content.retention("messages")
    async with sessions() as session, session.begin():
        if written:
            result = await session.execute(
                update(Message).where(Message.id.in_([m.id for m in written]), Message.sync_state != SYNCED)
                .values(sync_state=SYNCED, crm_external_id=note_id or conversation.crm_external_id, synced_at=now,
                        purge_after=now + message_window, last_sync_error=None, retry_at=None,
                        sync_attempts=Message.sync_attempts + 1, updated_at=Message.updated_at)
                .execution_options(synchronize_session=False))
            tally.synced += int(result.rowcount or 0)  # type: ignore[attr-defined]
        if note_id is not None and not await _unsynced(session, conversation.id, 1):
            tally.synced += await content.mark_synced(session, "conversations", conversation, note_id, now, window)


async def _write(sessions: async_sessionmaker[AsyncSession], driver: BaseDriver, tenant: uuid.UUID,
                 conversation: Conversation, customer: Customer | None, batch: list[Message],
                 written: list[Message], chunk: int) -> str:
    """Make sure the note exists, append the waiting messages chunk by chunk (`written` grows as each lands),
    then the closing lines; the note's CRM id."""
    note_id: str | None = conversation.crm_external_id
    customer_id = customer.crm_external_id if customer is not None else None
    if note_id is None and customer_id is None:
        raise DependencyPendingError("customers")
    if note_id is None:
        note_id = await note_once(sessions, driver, tenant, customer_id or "", header(conversation),
                                  row_key("conversations", conversation.id))
        # Kept at once: a later failure in this pass must not lose which note is the transcript.
        async with sessions() as session, session.begin():
            await content.remember_external_id(session, "conversations", conversation.id, note_id)
    for start in range(0, len(batch), max(1, chunk)):
        part = batch[start:start + chunk]
        await driver.append_note(customer_id or "", note_id, render(part),
                                 batch_key=f"{conversation.id}:{part[-1].turn_id}")
        written.extend(part)
    tail = closing(conversation)
    if tail:  # keyed by its text: a retried summary lands once, a changed one is appended
        digest = hashlib.sha256(tail.encode()).hexdigest()[:16]
        await driver.append_note(customer_id or "", note_id, tail, batch_key=f"{conversation.id}:closing:{digest}")
    return note_id


async def _unsynced(session: AsyncSession, conversation_id: uuid.UUID, limit: int) -> list[Message]:
    rows = await session.execute(
        select(Message).where(Message.conversation_id == conversation_id, Message.sync_state != SYNCED)
        .order_by(Message.spoken_at, Message.turn_id).limit(limit))
    return list(rows.scalars())
