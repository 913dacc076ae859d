"""Lifecycle workflows with stand-in activities on the time-skipping server: batching, stale writes,
updates during the retention window, a purge that refuses."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.types import (
    IncidentInput,
    IncidentResult,
    MirrorRecordInput,
    MirrorRecordResult,
    PurgeRecordInput,
    PurgeRecordResult,
    PurgeTranscriptInput,
    PurgeTranscriptResult,
    SyncTranscriptInput,
    SyncTranscriptResult,
)
from tests.support.lifecycle import eventually
from workflows.record_lifecycle import RecordLifecycleWorkflow
from workflows.transcript import TranscriptWorkflow
from workflows.types import MessagesAdded, RecordChanged, RecordLifecycleInput, TranscriptInput

DAY = timedelta(days=1)


class Script:
    """Stand-in activities that record their inputs and answer from a script."""

    def __init__(self) -> None:
        self.synced_batches: list[list[uuid.UUID]] = []
        self.mirrors: list[MirrorRecordInput] = []
        self.mirror_outcomes = ["stale", "synced", "synced", "synced"]
        self.purges: list[datetime] = []
        self.purge_answers: list[PurgeRecordResult] = []
        self.now: datetime | None = None

    def activities(self) -> list[object]:
        @activity.defn(name="sync_transcript")
        async def sync_transcript(input: SyncTranscriptInput) -> SyncTranscriptResult:
            self.synced_batches.append(list(input.message_ids))
            return SyncTranscriptResult(outcome="synced", messages_synced=len(input.message_ids),
                                        conversation_synced=True)

        @activity.defn(name="purge_transcript")
        async def purge_transcript(input: PurgeTranscriptInput) -> PurgeTranscriptResult:
            return PurgeTranscriptResult(messages_purged=0, conversation_purged=True, conversation_exists=False)

        @activity.defn(name="mirror_record")
        async def mirror_record(input: MirrorRecordInput) -> MirrorRecordResult:
            self.mirrors.append(input)
            outcome = self.mirror_outcomes.pop(0)
            assert self.now is not None
            return MirrorRecordResult(outcome=outcome, purge_after=self.now + input.retention)

        @activity.defn(name="purge_record")
        async def purge_record(input: PurgeRecordInput) -> PurgeRecordResult:
            self.purges.append(input.as_of)
            return self.purge_answers.pop(0)

        @activity.defn(name="open_sync_incident")
        async def open_sync_incident(input: IncidentInput) -> IncidentResult:
            return IncidentResult(opened=True)

        return [sync_transcript, purge_transcript, mirror_record, purge_record, open_sync_incident]


async def test_messages_are_batched_by_time_and_count(time_skipping_env: WorkflowEnvironment,
                                                      task_queue: str) -> None:
    env, script = time_skipping_env, Script()
    ids = [uuid.uuid4() for _ in range(6)]
    async with Worker(env.client, task_queue=task_queue, workflows=[TranscriptWorkflow],
                      activities=script.activities()):
        handle = await env.client.start_workflow(
            TranscriptWorkflow.run, TranscriptInput(tenant_id=uuid.uuid4(), conversation_id=uuid.uuid4(),
                                                    provider="hubspot", conversation_retention=30 * DAY,
                                                    message_retention=7 * DAY, debounce=timedelta(minutes=1),
                                                    max_batch=3),
            id=f"mirror:t:conversations:{uuid.uuid4()}", task_queue=task_queue)
        await eventually(lambda: script.synced_batches == [[]])  # the note first, before any message
        await handle.signal(TranscriptWorkflow.messages_added, MessagesAdded(message_ids=ids[:2]))
        await handle.signal(TranscriptWorkflow.messages_added, MessagesAdded(message_ids=ids[:1]))  # a resend
        assert await handle.query(TranscriptWorkflow.sync_state) == "synced" and len(script.synced_batches) == 1
        await env.sleep(timedelta(minutes=1, seconds=1))  # the debounce window closes: one append for both
        await eventually(lambda: len(script.synced_batches) == 2)
        await handle.signal(TranscriptWorkflow.messages_added, MessagesAdded(message_ids=ids[2:]))
        await eventually(lambda: len(script.synced_batches) == 3)  # a full batch goes at once
        await env.sleep(timedelta(minutes=1, seconds=1))
        await eventually(lambda: len(script.synced_batches) == 4)
        await handle.terminate()
    assert script.synced_batches == [[], ids[:2], ids[2:5], ids[5:]]


async def test_stale_writes_and_updates_during_the_window_are_written_before_any_purge(
        time_skipping_env: WorkflowEnvironment, task_queue: str) -> None:
    env, script = time_skipping_env, Script()
    script.now = await env.get_current_time()
    later = script.now + 40 * DAY
    script.purge_answers = [
        PurgeRecordResult(purged=False, exists=True, synced=False),  # set back to pending without a signal
        PurgeRecordResult(purged=False, exists=True, synced=True, purge_after=later),  # re-synced elsewhere
        PurgeRecordResult(purged=True, exists=False)]
    async with Worker(env.client, task_queue=task_queue, workflows=[RecordLifecycleWorkflow],
                      activities=script.activities()):
        handle = await env.client.start_workflow(
            RecordLifecycleWorkflow.run,
            RecordLifecycleInput(tenant_id=uuid.uuid4(), table="leads", row_id=uuid.uuid4(), provider="hubspot",
                                 retention=30 * DAY),
            id=f"mirror:t:leads:{uuid.uuid4()}", task_queue=task_queue)
        await eventually(lambda: len(script.mirrors) == 2)  # a stale write is written again at once
        await env.sleep(10 * DAY)
        await handle.signal(RecordLifecycleWorkflow.changed, RecordChanged())
        await eventually(lambda: len(script.mirrors) == 3)  # the update is mirrored during the window
        assert script.purges == []
        result = await handle.result()
    assert result.outcome == "purged" and result.crm_writes == 4
    # Purge attempts at the window, then re-written, then the window the database reported.
    assert script.purges[0] >= script.now + 30 * DAY and script.purges[-1] >= later
    assert len(script.mirrors) == 4


async def test_continue_as_new_carries_waiting_messages(time_skipping_env: WorkflowEnvironment,
                                                        task_queue: str) -> None:
    env, script = time_skipping_env, Script()
    ids = [uuid.uuid4() for _ in range(3)]
    workflow_id = f"mirror:t:conversations:{uuid.uuid4()}"
    async with Worker(env.client, task_queue=task_queue, workflows=[TranscriptWorkflow],
                      activities=script.activities()):
        first = await env.client.start_workflow(
            TranscriptWorkflow.run, TranscriptInput(tenant_id=uuid.uuid4(), conversation_id=uuid.uuid4(),
                                                    provider="hubspot", conversation_retention=30 * DAY,
                                                    message_retention=7 * DAY, debounce=timedelta(minutes=1),
                                                    max_batch=2, continue_as_new_after=1),
            id=workflow_id, task_queue=task_queue)
        latest = env.client.get_workflow_handle(workflow_id)
        await eventually(lambda: script.synced_batches == [[]])
        await latest.signal(TranscriptWorkflow.messages_added, MessagesAdded(message_ids=ids))
        await eventually(lambda: len(script.synced_batches) == 2)  # a full batch at once, then a new run
        await env.sleep(timedelta(minutes=1, seconds=1))  # the one left over was carried into the new run
        await eventually(lambda: len(script.synced_batches) == 3)
        first_history = await env.client.get_workflow_handle(workflow_id, run_id=first.result_run_id).fetch_history()
        latest_run = (await latest.describe()).run_id
        await latest.terminate()
    assert script.synced_batches == [[], ids[:2], ids[2:]]
    assert first_history.events[-1].HasField("workflow_execution_continued_as_new_event_attributes")
    assert latest_run != first.result_run_id
