"""A one-activity workflow: the baseline the mirror benchmark compares against on the same Temporal server."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn
async def trivial_step(n: int) -> int:
    return n + 1


@workflow.defn
class TrivialWorkflow:
    @workflow.run
    async def run(self, n: int) -> int:
        return await workflow.execute_activity(trivial_step, n, start_to_close_timeout=timedelta(seconds=30))
