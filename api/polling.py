"""The per-tenant polling Schedule for CRMs without webhooks: `ensure_poll_schedule` (idempotent) and removal."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from workflows.outbound_types import CrmPollInput, poll_schedule_id


async def ensure_poll_schedule(client: Client, tenant_id: uuid.UUID, objects: Sequence[str], task_queue: str,
                               *, every: timedelta = timedelta(minutes=2)) -> str:
    """Create or update the tenant's poll Schedule; a tick still running when the next is due is skipped."""
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            "CrmPollWorkflow", CrmPollInput(tenant_id=tenant_id, objects=list(objects), task_queue=task_queue),
            id=f"crm-poll:{tenant_id}", task_queue=task_queue),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=every))
    try:
        await client.create_schedule(poll_schedule_id(tenant_id), schedule)
        return "created"
    except ScheduleAlreadyRunningError:
        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(poll_schedule_id(tenant_id)).update(replace)
        return "updated"


async def remove_poll_schedule(client: Client, tenant_id: uuid.UUID) -> None:
    await client.get_schedule_handle(poll_schedule_id(tenant_id)).delete()
