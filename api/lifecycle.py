"""How processes outside the worker drive the tenant mirrors in Temporal: ids, inputs, wakes, the sweep schedule.

One mirror per tenant, workflow id `mirror:{tenant}` — a business key, so a repeated delivery reaches the same
run instead of making a second one. Every delivery is a signal-with-start: it starts the mirror when the tenant
has none running, and wakes the one that runs.
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
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from store.content import retention
from workflows import search_attributes as sa
from workflows.sweep import SweepWorkflow
from workflows.tenant_mirror import TenantMirrorWorkflow
from workflows.types import ConnectionFixed, MirrorInput, MirrorPolicy, Redrive, SweepInput, Wake

SWEEP_SCHEDULE_ID = "crm-sor-sweep"


def mirror_workflow_id(tenant_id: uuid.UUID) -> str:
    return f"mirror:{tenant_id}"


@dataclass
class Delivery:
    """What one tenant's mirror gets from one relay batch: one signal-with-start."""

    tenant_id: uuid.UUID
    input: MirrorInput
    redrive: bool = False  # an operator's redrive: unparks, and rows are due again
    reconnected: bool = False  # the connection works again: unparks a mirror waiting on auth_error
    outbox_ids: list[int] = field(default_factory=list)

    @property
    def workflow_id(self) -> str:
        return mirror_workflow_id(self.tenant_id)


@dataclass(frozen=True)
class MirrorOptions:
    """What the starter puts into every mirror input (workflows read no settings)."""

    task_queue: str
    retention_overrides: Mapping[str, int] = field(default_factory=dict)
    policy: MirrorPolicy = field(default_factory=MirrorPolicy)
    passes_per_run: int = 500

    def input(self, tenant_id: uuid.UUID, provider: str) -> MirrorInput:
        windows = {table: retention(table, self.retention_overrides) for table in self.retention_overrides}
        return MirrorInput(tenant_id=tenant_id, provider=provider, retention=windows, policy=self.policy,
                           passes_per_run=self.passes_per_run)


def initial_search_attributes(delivery: Delivery) -> TypedSearchAttributes:
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(sa.TENANT, str(delivery.tenant_id)),
        SearchAttributePair(sa.PROVIDER, delivery.input.provider), SearchAttributePair(sa.SYNC_STATE, "pending")]
    return TypedSearchAttributes(pairs)


async def deliver(client: Client, delivery: Delivery, task_queue: str) -> None:
    """Start the tenant's mirror or wake the running one (signal-with-start); safe to repeat."""
    signal: str
    arg: Redrive | ConnectionFixed | Wake
    if delivery.redrive:
        signal, arg = "redrive", Redrive()
    elif delivery.reconnected:
        signal, arg = "connection_fixed", ConnectionFixed(tenant_id=delivery.tenant_id)
    else:
        signal, arg = "wake", Wake()
    await client.start_workflow(TenantMirrorWorkflow.run, delivery.input, id=delivery.workflow_id,
                                task_queue=task_queue, start_signal=signal, start_signal_args=[arg],
                                search_attributes=initial_search_attributes(delivery))


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
