"""How processes outside the worker drive lifecycles in Temporal: ids, inputs, starts, signals, the sweep schedule.

Workflow ids are business keys — `mirror:{tenant}:{table}:{row}`; a message rides on its conversation's
`mirror:{tenant}:conversations:{conversation}` — so a repeated delivery reaches the same run instead of
making a second one. A plain start uses the use-existing conflict policy; anything with news for the run
(an update, a redrive, new messages) is a signal-with-start.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy

from store.content import retention
from workflows import search_attributes as sa
from workflows.record_lifecycle import RecordLifecycleWorkflow
from workflows.sweep import SweepWorkflow
from workflows.transcript import TranscriptWorkflow
from workflows.types import (
    ConnectionFixed,
    LifecyclePolicy,
    MessagesAdded,
    RecordLifecycleInput,
    SweepInput,
    TranscriptInput,
)

SWEEP_SCHEDULE_ID = "crm-sor-sweep"
SIGNALS = {"update": "changed", "redrive": "redrive", "wake": "dependency_synced", "append": "messages_added"}


def workflow_id(tenant_id: uuid.UUID, table: str, row_id: uuid.UUID) -> str:
    return f"mirror:{tenant_id}:{table}:{row_id}"


@dataclass
class Delivery:
    """Everything one workflow gets from one relay batch: a start, then its signals in order."""

    workflow_id: str
    run: Any
    input: RecordLifecycleInput | TranscriptInput
    provider: str
    signals: list[tuple[str, Any]] = field(default_factory=list)
    message_ids: list[uuid.UUID] = field(default_factory=list)  # for a transcript: one messages_added
    outbox_ids: list[int] = field(default_factory=list)

    def all_signals(self) -> list[tuple[str, Any]]:
        batch = [("messages_added", MessagesAdded(message_ids=self.message_ids))] if self.message_ids else []
        return batch + self.signals


@dataclass(frozen=True)
class LifecycleOptions:
    """What the starter puts into every lifecycle input (workflows read no settings)."""

    task_queue: str
    retention_overrides: Mapping[str, int] = field(default_factory=dict)
    policy: LifecyclePolicy = field(default_factory=LifecyclePolicy)
    debounce: timedelta = timedelta(seconds=5)
    max_batch: int = 25

    def record_input(self, tenant_id: uuid.UUID, table: str, row_id: uuid.UUID, provider: str
                     ) -> RecordLifecycleInput:
        return RecordLifecycleInput(tenant_id=tenant_id, table=table, row_id=row_id, provider=provider,
                                    retention=retention(table, self.retention_overrides), policy=self.policy)

    def transcript_input(self, tenant_id: uuid.UUID, conversation_id: uuid.UUID, provider: str) -> TranscriptInput:
        return TranscriptInput(tenant_id=tenant_id, conversation_id=conversation_id, provider=provider,
                               conversation_retention=retention("conversations", self.retention_overrides),
                               message_retention=retention("messages", self.retention_overrides),
                               debounce=self.debounce, max_batch=self.max_batch, policy=self.policy)

    def delivery(self, tenant_id: uuid.UUID, table: str, row_id: uuid.UUID, provider: str) -> Delivery:
        """The delivery for a row; messages are passed here as their conversation (`conversations`)."""
        wid = workflow_id(tenant_id, table, row_id)
        if table == "conversations":
            return Delivery(wid, TranscriptWorkflow.run, self.transcript_input(tenant_id, row_id, provider), provider)
        return Delivery(wid, RecordLifecycleWorkflow.run,
                        self.record_input(tenant_id, table, row_id, provider), provider)


def initial_search_attributes(delivery: Delivery) -> TypedSearchAttributes:
    table = "conversations" if isinstance(delivery.input, TranscriptInput) else delivery.input.table
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(sa.TENANT, str(delivery.input.tenant_id)), SearchAttributePair(sa.TABLE, table),
        SearchAttributePair(sa.PROVIDER, delivery.provider), SearchAttributePair(sa.SYNC_STATE, "pending")]
    return TypedSearchAttributes(pairs)


async def deliver(client: Client, delivery: Delivery, task_queue: str) -> None:
    """Start (or reach) the workflow and hand it its signals; safe to repeat."""
    attributes = initial_search_attributes(delivery)
    signals = delivery.all_signals()
    if not signals:
        await client.start_workflow(delivery.run, delivery.input, id=delivery.workflow_id, task_queue=task_queue,
                                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                                    search_attributes=attributes)
        return
    (first, first_arg), *rest = signals
    handle = await client.start_workflow(delivery.run, delivery.input, id=delivery.workflow_id,
                                         task_queue=task_queue, start_signal=first, start_signal_args=[first_arg],
                                         search_attributes=attributes)
    for name, arg in rest:
        await handle.signal(name, arg)


async def ensure_sweep_schedule(client: Client, task_queue: str, *, every: timedelta = timedelta(minutes=15),
                                input: SweepInput | None = None) -> str:
    """Register the sweep's Schedule, or bring an existing one up to date: idempotent, any process may call it."""
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(SweepWorkflow.run, input or SweepInput(), id="sweep",
                                           task_queue=task_queue),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(catchup_window=every))  # a sweep missed while down is not worth replaying
    try:
        await client.create_schedule(SWEEP_SCHEDULE_ID, schedule)
        return "created"
    except ScheduleAlreadyRunningError:
        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(SWEEP_SCHEDULE_ID).update(replace)
        return "updated"


async def notify_connection_fixed(client: Client, tenant_id: uuid.UUID) -> int:
    """After a reconnect: wake the tenant's lifecycles that wait on auth_error (or a blocking error) at once,
    instead of at their next slow poll. Returns how many were signalled; safe to call any time."""
    query = (f'CrmTenant = "{tenant_id}" AND CrmSyncState IN ("auth_wait", "blocked") '
             f'AND ExecutionStatus = "Running"')
    signalled = 0
    async for execution in client.list_workflows(query):
        await client.get_workflow_handle(execution.id).signal("connection_fixed",
                                                              ConnectionFixed(tenant_id=tenant_id))
        signalled += 1
    return signalled
