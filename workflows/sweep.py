"""SweepWorkflow: the reconciliation a Temporal Schedule runs every few minutes (DESIGN §3, Sweep).

Wakes the mirror of tenants whose rows fell through, purges overdue synced rows in batches (the purge statement
refuses unsynced rows), escalates rows stuck for 24 hours, and prunes the delivered outbox. Its clock is
the workflow's: `as_of` is passed to every step.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.sweep import SweepActivities
    from activities.types import SweepStepInput, SweepStepResult
    from workflows.types import SweepInput, SweepResult

STEP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=1),
                         maximum_attempts=5)


@workflow.defn
class SweepWorkflow:
    """Reconcile class-(c) rows with the tenant mirrors; purge; escalate. One run per schedule tick."""

    @workflow.run
    async def run(self, input: SweepInput) -> SweepResult:
        now, limit = workflow.now(), input.batch_size
        enqueued = await _step(SweepActivities.sweep_enqueue_orphans,
                               SweepStepInput(as_of=now, limit=limit, older_than=input.orphan_grace))
        purged = await _step(SweepActivities.sweep_purge_overdue,
                             SweepStepInput(as_of=now, limit=input.purge_batch_size))
        escalated = await _step(SweepActivities.sweep_escalate_stuck,
                                SweepStepInput(as_of=now, limit=limit, older_than=input.escalate_after))
        pruned = await _step(SweepActivities.sweep_prune_outbox,
                             SweepStepInput(as_of=now, limit=limit * 10, older_than=input.keep_relayed))
        return SweepResult(enqueued=enqueued, purged=purged, escalated=escalated, pruned=pruned)


async def _step(step: Callable[[SweepActivities, SweepStepInput], Awaitable[SweepStepResult]],
                input: SweepStepInput) -> int:
    result = await workflow.execute_activity_method(step, input, start_to_close_timeout=timedelta(minutes=10),
                                                    heartbeat_timeout=timedelta(minutes=2), retry_policy=STEP_RETRY)
    return result.count
