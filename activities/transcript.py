"""Transcripts in a mirror pass: a conversation is ONE note on its customer's CRM record, appended in chunks.

Each chunk is named by its last message's turn (`{conversation}:{turn}`), and the driver finds a chunk's marker
anywhere in the note, so a chunk written by a pass that died before recording it is never appended twice. The
closing lines (end time, summary) are keyed by their text: appended once, and again only when they change.
Message rows are marked synced once the CRM holds them, and the conversation (compare-and-set) once none waits.

The pass works in phases over all its due conversations — read, create the missing notes, append, mark — so
the database sees a handful of transactions per pass, not several per conversation; the CRM calls of each
phase run concurrently.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.crm_plan import DependencyPendingError
from activities.crm_write import ACCOUNT_WIDE, notes_once, row_key
from activities.tally import Tally, each
from activities.types import MirrorPassInput
from drivers.base import BaseDriver
from drivers.errors import DriverError
from store import content
from store.base import SyncState
from store.erasure import held_rows
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
    tenant = input.tenant_id
    async with sessions() as session:
        due = await content.due_rows(session, "conversations", tenant, now, input.batch_size)
        if not due:
            return
        held = await held_rows(session, tenant, "conversations", [c.id for c in due])
        customers = await _customers(session, [c.customer_id for c in due if c.customer_id is not None])
        waiting = await _unsynced(session, [c.id for c in due if c.id not in held])
    conversations: list[Conversation] = []
    for conversation in due:
        customer = customers.get(conversation.customer_id) if conversation.customer_id else None
        if conversation.id in held:
            tally.failures.append(("conversations", conversation, LookupError("erasure_hold")))
        elif conversation.crm_external_id is None and (customer is None or customer.crm_external_id is None):
            tally.failures.append(("conversations", conversation, DependencyPendingError("customers")))
        else:
            conversations.append(conversation)
    notes = await _notes(sessions, driver, tenant, conversations, customers, tally)
    written: dict[uuid.UUID, list[Message]] = {}
    failed: set[uuid.UUID] = set()

    async def append(conversation: Conversation) -> None:
        if tally.stop is not None:
            return
        customer = customers.get(conversation.customer_id) if conversation.customer_id else None
        customer_id = customer.crm_external_id if customer is not None else None
        done = written.setdefault(conversation.id, [])
        try:
            await _append(driver, conversation, customer_id or "", notes[conversation.id],
                          waiting.get(conversation.id, [])[:MESSAGES_PER_PASS], done, input.transcript_chunk)
        except DriverError as exc:
            tally.failures.append(("conversations", conversation, exc))
            failed.add(conversation.id)  # the chunks that landed are still marked
            if isinstance(exc, ACCOUNT_WIDE):
                tally.stop = exc

    await each([c for c in conversations if c.id in notes], append)
    complete = [c for c in conversations if c.id in notes and c.id not in failed and c.id in written
                and len(written[c.id]) == len(waiting.get(c.id, []))]
    await _mark(sessions, input, complete, notes, written, tally, clock())


async def _notes(sessions: async_sessionmaker[AsyncSession], driver: BaseDriver, tenant: uuid.UUID,
                 conversations: list[Conversation], customers: dict[uuid.UUID, Customer], tally: Tally
                 ) -> dict[uuid.UUID, str]:
    """The transcript note of each conversation: known, or created now (with its header) at most once."""
    notes = {c.id: c.crm_external_id for c in conversations if c.crm_external_id is not None}
    missing = {row_key("conversations", c.id): c for c in conversations if c.crm_external_id is None}
    if not missing:
        return notes

    async def remember(session: AsyncSession, created: dict[str, str]) -> None:
        for key, note_id in created.items():  # kept at once: which note is this conversation's transcript
            await content.remember_external_id(session, "conversations", missing[key].id, note_id)

    requests = [(key, customers[c.customer_id].crm_external_id or "", header(c))
                for key, c in missing.items() if c.customer_id is not None]
    for key, outcome in (await notes_once(sessions, driver, tenant, requests, remember)).items():
        if isinstance(outcome, str):
            notes[missing[key].id] = outcome
            continue
        tally.failures.append(("conversations", missing[key], outcome))
        if isinstance(outcome, ACCOUNT_WIDE):
            tally.stop = outcome
    return notes


async def _append(driver: BaseDriver, conversation: Conversation, customer_id: str, note_id: str,
                  batch: list[Message], written: list[Message], chunk: int) -> None:
    """Append the waiting messages chunk by chunk (`written` grows as each lands), then the closing lines."""
    for start in range(0, len(batch), max(1, chunk)):
        part = batch[start:start + chunk]
        await driver.append_note(customer_id, note_id, render(part), batch_key=f"{conversation.id}:{part[-1].turn_id}")
        written.extend(part)
    tail = closing(conversation)
    if tail:  # keyed by its text: a retried summary lands once, a changed one is appended
        digest = hashlib.sha256(tail.encode()).hexdigest()[:16]
        await driver.append_note(customer_id, note_id, tail, batch_key=f"{conversation.id}:closing:{digest}")


async def _mark(sessions: async_sessionmaker[AsyncSession], input: MirrorPassInput,
                complete: list[Conversation], notes: dict[uuid.UUID, str], written: dict[uuid.UUID, list[Message]],
                tally: Tally, now: datetime) -> None:
    """One transaction: the messages the CRM now holds, then each conversation none of whose messages waits
    (compare-and-set: one that got new messages or a change meanwhile stays due)."""
    window = input.retention.get("conversations") or content.retention("conversations")
    message_window = input.retention.get("messages") or content.retention("messages")
    async with sessions() as session, session.begin():
        for conversation_id, messages in written.items():
            if not messages:
                continue
            result = await session.execute(
                update(Message).where(Message.id.in_([m.id for m in messages]), Message.sync_state != SYNCED)
                .values(sync_state=SYNCED, crm_external_id=notes[conversation_id], synced_at=now,
                        purge_after=now + message_window, last_sync_error=None, retry_at=None,
                        sync_attempts=Message.sync_attempts + 1, updated_at=Message.updated_at)
                .execution_options(synchronize_session=False))
            tally.synced += int(result.rowcount or 0)  # type: ignore[attr-defined]
        tally.synced += len(await content.mark_synced_many(
            session, "conversations", [(c, notes[c.id]) for c in complete], now, window))


async def _customers(session: AsyncSession, ids: list[uuid.UUID]) -> dict[uuid.UUID, Customer]:
    if not ids:
        return {}
    rows = await session.execute(select(Customer).where(Customer.id.in_(ids)))
    return {c.id: c for c in rows.scalars()}


async def _unsynced(session: AsyncSession, conversation_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[Message]]:
    if not conversation_ids:
        return {}
    rows = await session.execute(
        select(Message).where(Message.conversation_id.in_(conversation_ids), Message.sync_state != SYNCED)
        .order_by(Message.conversation_id, Message.spoken_at, Message.turn_id))
    found: dict[uuid.UUID, list[Message]] = {}
    for message in rows.scalars():
        found.setdefault(message.conversation_id, []).append(message)
    return found
