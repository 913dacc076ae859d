"""TranscriptWorkflow: a conversation's lifecycle, with its messages mirrored as one transcript note.

Messages arrive as `messages_added` signals (ids). A batch is flushed `debounce` after its first message or
as soon as `max_batch` wait — one CRM append per batch, not one record per message. Each message row is
purged when its own window (7 days) has passed since the CRM got it; the conversation (30 days) once its
window passed and none of its messages is left. Workflow id `mirror:{tenant}:conversations:{conversation}`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.transcript import TranscriptActivities
    from activities.types import (
        IncidentInput,
        PurgeTranscriptInput,
        SyncTranscriptInput,
        SyncTranscriptResult,
    )
    from workflows import search_attributes as sa
    from workflows.lifecycle_base import DB_RETRY, DB_TIMEOUT, LifecycleBase, crm_retry
    from workflows.types import LifecycleResult, MessagesAdded, TranscriptInput


@workflow.defn
class TranscriptWorkflow(LifecycleBase):
    """Mirror a conversation and its messages to one CRM note, then purge each on its window."""

    def __init__(self) -> None:
        super().__init__()
        self._pending: list[uuid.UUID] = []
        self._first_pending_at: datetime | None = None

    @workflow.signal
    def messages_added(self, signal: MessagesAdded) -> None:
        self._queue(signal.message_ids)

    def _queue(self, ids: list[uuid.UUID]) -> None:
        fresh = [i for i in ids if i not in self._pending]
        if fresh and not self._pending:
            self._first_pending_at = workflow.now()
        self._pending += fresh

    @workflow.run
    async def run(self, input: TranscriptInput) -> LifecycleResult:
        self._escalate_at, self._incident_open = input.escalate_at, input.incident_open
        self._queue(input.pending_message_ids)
        synced, next_purge = input.conversation_synced, input.next_purge_after
        workflow.upsert_search_attributes([sa.TENANT.value_set(str(input.tenant_id)),
                                           sa.TABLE.value_set("conversations"), sa.PROVIDER.value_set(input.provider)])
        self._set_state("synced" if synced else "pending")
        ids = IncidentInput(tenant_id=input.tenant_id, table="conversations", row_id=input.conversation_id)
        flushes = 0
        while True:
            knob = input.continue_as_new_after and flushes >= input.continue_as_new_after
            # Not with a change or redrive in hand: those flags are not carried, so act on them first.
            if (knob or workflow.info().is_continue_as_new_suggested()) and not (self._changed or self._redrive):
                await self._drained()
                workflow.continue_as_new(input.model_copy(update={
                    "pending_message_ids": self._pending, "conversation_synced": synced,
                    "next_purge_after": next_purge, "escalate_at": self._escalate_at,
                    "incident_open": self._incident_open}))
            flush_at = self._first_pending_at + input.debounce if self._first_pending_at else None
            if (not synced or self._changed or self._redrive or len(self._pending) >= input.max_batch
                    or (flush_at is not None and workflow.now() >= flush_at)):
                result = await self._flush(input, ids)
                flushes += 1
                if result.outcome in ("gone", "erased"):
                    return await self._end(result.outcome)
                synced, next_purge = result.conversation_synced, result.next_purge_after
                self._set_state("synced" if synced else "pending")
                continue
            woke = await self._until(self._wake_condition(input, idle=flush_at is None),
                min((m for m in (flush_at, next_purge) if m is not None), default=None))
            if woke or next_purge is None or workflow.now() < next_purge:
                continue
            purge = await workflow.execute_activity_method(
                TranscriptActivities.purge_transcript,
                PurgeTranscriptInput(tenant_id=input.tenant_id, conversation_id=input.conversation_id,
                                     as_of=workflow.now()),
                start_to_close_timeout=DB_TIMEOUT, retry_policy=DB_RETRY)
            if purge.conversation_purged:
                self._set_state("purged")
                return await self._end("purged")
            if not purge.conversation_exists:
                return await self._end("gone")
            synced, next_purge = purge.conversation_synced, purge.next_purge_after
            self._queue(purge.unsynced_message_ids)

    def _wake_condition(self, input: TranscriptInput, *, idle: bool) -> Callable[[], bool]:
        # When nothing was waiting, the first arrival wakes us to start its debounce clock.
        return lambda: (self._changed or self._redrive or len(self._pending) >= input.max_batch
                        or (idle and bool(self._pending)))

    async def _flush(self, input: TranscriptInput, ids: IncidentInput) -> SyncTranscriptResult:
        batch = self._pending[: input.max_batch]
        include_summary, self._changed = self._changed, False
        write = SyncTranscriptInput(tenant_id=input.tenant_id, conversation_id=input.conversation_id,
                                    message_ids=batch, include_summary=include_summary,
                                    conversation_retention=input.conversation_retention,
                                    message_retention=input.message_retention)

        def attempt() -> workflow.ActivityHandle[SyncTranscriptResult]:
            return workflow.start_activity_method(
                TranscriptActivities.sync_transcript, write, start_to_close_timeout=input.policy.crm_timeout,
                heartbeat_timeout=input.policy.crm_heartbeat,
                retry_policy=crm_retry(input.policy))

        result = await self._write(attempt, ids, input.policy)
        done = set(batch)
        self._pending = [i for i in self._pending if i not in done]
        self._first_pending_at = workflow.now() if self._pending else None
        self._queue([i for i in result.unsynced_message_ids if i not in done])
        return result

    async def _end(self, outcome: str) -> LifecycleResult:
        if outcome != "purged":
            self._set_state(outcome)
        await self._drained()
        return LifecycleResult(outcome=outcome, crm_writes=self._crm_writes)
