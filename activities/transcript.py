"""Transcript activities: a conversation is ONE note on its customer's CRM record, appended in batches.

The batch is named by message ids in the activity input (decided by the workflow), so a retried attempt
renders exactly the same text; the driver finds a batch's marker anywhere in the note, so a retried batch is
never appended twice, whatever was appended after it. Each
message row is marked synced once the CRM holds it, and the conversation once no message of it waits.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from activities.contained import contained
from activities.crm_plan import DependencyPendingError
from activities.crm_write import as_application_error, note_once, row_key
from activities.mirror import EXPECTED, LifecycleActivityBase, heartbeating, system_actor
from activities.types import PurgeTranscriptInput, PurgeTranscriptResult, SyncTranscriptInput, SyncTranscriptResult
from store import content, incidents
from store.base import SyncState
from store.models import Conversation, Customer, Message

SYNCED = SyncState.SYNCED.value


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


class TranscriptActivities(LifecycleActivityBase):
    """Activities of `TranscriptWorkflow`."""

    def all(self) -> list[Callable[..., Any]]:
        return [self.sync_transcript, self.purge_transcript]

    @activity.defn
    @contained
    async def sync_transcript(self, input: SyncTranscriptInput) -> SyncTranscriptResult:
        """Make sure the note exists, append the named message batch, mark what the CRM now holds."""
        tenant, conversation_id = input.tenant_id, input.conversation_id
        async with self._sessions() as session:
            conversation = await content.load(session, "conversations", tenant, conversation_id)
            if conversation is None:
                return SyncTranscriptResult(outcome="gone")
            customer = await session.get(Customer, conversation.customer_id) if conversation.customer_id else None
            batch = await _messages(session, conversation_id, input.message_ids)
        if await self._erased(tenant, "conversations", conversation_id):
            return SyncTranscriptResult(outcome="erased")
        rows = [conversation_id] + [m.id for m in batch]
        try:
            note_id = await self._write(input, conversation, customer, batch)
        except EXPECTED as exc:
            await self._failed(tenant, "conversations", [conversation_id], exc)
            if isinstance(exc, DependencyPendingError):  # woken when the customer syncs…
                async with self._sessions() as session:  # …unless it synced after we looked: write again now
                    now_known = customer is not None and bool(await session.scalar(
                        select(Customer.crm_external_id).where(Customer.id == customer.id)))
                return SyncTranscriptResult(outcome="retry" if now_known else "waiting")
            raise as_application_error(exc) from None
        now = self._clock()
        async with self._sessions() as session, session.begin():
            if batch:
                await session.execute(
                    update(Message).where(Message.id.in_([m.id for m in batch]), Message.sync_state != SYNCED)
                    .values(sync_state=SYNCED, crm_external_id=note_id, synced_at=now,
                            purge_after=now + input.message_retention, last_sync_error=None,
                            updated_at=Message.updated_at))
            waiting = await _unsynced_ids(session, conversation_id)
            synced = not waiting and await content.mark_synced(session, "conversations", conversation, note_id, now,
                                                               input.conversation_retention)
            await incidents.resolve_for_rows(session, "conversations", rows[:1] if synced else [])
            await incidents.resolve_for_rows(session, "messages", rows[1:])
            next_purge = await _next_purge(session, conversation_id)
        return SyncTranscriptResult(outcome="synced" if synced else "stale",
                                    messages_synced=len(batch), conversation_synced=synced,
                                    next_purge_after=next_purge, unsynced_message_ids=waiting)

    async def _write(self, input: SyncTranscriptInput, conversation: Conversation, customer: Customer | None,
                     batch: list[Message]) -> str:
        note_id: str | None = conversation.crm_external_id
        customer_id = customer.crm_external_id if customer is not None else None
        if note_id is None and customer_id is None:
            raise DependencyPendingError("customers")
        async with heartbeating(), self._drivers.open(input.tenant_id, system_actor("transcript")) as driver:
            if note_id is None:
                note_id = await note_once(self._sessions, driver, input.tenant_id, customer_id or "",
                                          header(conversation), row_key("conversations", conversation.id))
                # Kept at once: a later failure in this attempt must not lose which note is the transcript.
                async with self._sessions() as session, session.begin():
                    await content.remember_external_id(session, "conversations", conversation.id, note_id)
            if batch:
                await driver.append_note(customer_id or "", note_id, render(batch),
                                         batch_key=f"{conversation.id}:{batch[-1].turn_id}")
            tail = closing(conversation) if input.include_summary else ""
            if tail:  # keyed by its text: a retried summary lands once, a changed one is appended
                digest = hashlib.sha256(tail.encode()).hexdigest()[:16]
                key = f"{conversation.id}:closing:{digest}"
                await driver.append_note(customer_id or "", note_id, tail, batch_key=key)
        return note_id

    @activity.defn
    @contained
    async def purge_transcript(self, input: PurgeTranscriptInput) -> PurgeTranscriptResult:
        """Purge the conversation's messages past their window, then the conversation once none is left."""
        conversation_id = input.conversation_id
        async with self._sessions() as session, session.begin():
            messages = await content.purge(session, "messages", input.as_of, tenant_id=input.tenant_id,
                                           conversation_id=conversation_id)
            purged = await content.purge(session, "conversations", input.as_of, tenant_id=input.tenant_id,
                                         row_ids=[conversation_id])
            if purged:
                return PurgeTranscriptResult(messages_purged=messages, conversation_purged=True,
                                             conversation_exists=False)
            conversation = await content.load(session, "conversations", input.tenant_id, conversation_id)
            waiting = await _unsynced_ids(session, conversation_id)
            next_purge = await _next_purge(session, conversation_id)
        return PurgeTranscriptResult(
            messages_purged=messages, conversation_purged=False, conversation_exists=conversation is not None,
            conversation_synced=conversation is not None and conversation.sync_state == SYNCED,
            next_purge_after=next_purge, unsynced_message_ids=waiting)


async def _messages(session: AsyncSession, conversation_id: uuid.UUID, ids: list[uuid.UUID]) -> list[Message]:
    if not ids:
        return []
    rows = await session.execute(
        select(Message).where(Message.conversation_id == conversation_id, Message.id.in_(ids),
                              Message.sync_state != SYNCED)
        .order_by(Message.spoken_at, Message.turn_id))
    return list(rows.scalars())


async def _unsynced_ids(session: AsyncSession, conversation_id: uuid.UUID) -> list[uuid.UUID]:
    rows = await session.execute(select(Message.id).where(Message.conversation_id == conversation_id,
                                                          Message.sync_state != SYNCED)
                                 .order_by(Message.spoken_at, Message.turn_id))
    return list(rows.scalars())


async def _next_purge(session: AsyncSession, conversation_id: uuid.UUID) -> datetime | None:
    """The next moment something of this conversation becomes purgeable (its messages first)."""
    messages = await session.execute(select(func.min(Message.purge_after)).where(
        Message.conversation_id == conversation_id, Message.sync_state == SYNCED))
    own = await session.execute(select(Conversation.purge_after).where(
        Conversation.id == conversation_id, Conversation.sync_state == SYNCED))
    moments = [m for m in (messages.scalar_one_or_none(), own.scalar_one_or_none()) if m is not None]
    return min(moments) if moments else None
