"""RecordLifecycleWorkflow: one class-(c) row from insert to purge (DESIGN §3).

mirror (create, later partial updates) → synced with `purge_after = synced_at + window` → durable timer →
purge by a statement that itself refuses unsynced rows. An update that arrives while the timer runs is
mirrored first and restarts the window. Workflow id `mirror:{tenant}:{table}:{row}`.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.mirror import MirrorActivities
    from activities.types import IncidentInput, MirrorRecordInput, MirrorRecordResult, PurgeRecordInput
    from workflows import search_attributes as sa
    from workflows.lifecycle_base import DB_RETRY, DB_TIMEOUT, LifecycleBase, crm_retry
    from workflows.types import LifecycleResult, RecordLifecycleInput


@workflow.defn
class RecordLifecycleWorkflow(LifecycleBase):
    """Mirror one row to the tenant's CRM, keep it for its window, then purge it."""

    @workflow.run
    async def run(self, input: RecordLifecycleInput) -> LifecycleResult:
        self._escalate_at, self._incident_open = input.escalate_at, input.incident_open
        workflow.upsert_search_attributes([sa.TENANT.value_set(str(input.tenant_id)),
                                           sa.TABLE.value_set(input.table), sa.PROVIDER.value_set(input.provider)])
        self._set_state("escalated" if self._incident_open else "pending")
        ids = IncidentInput(tenant_id=input.tenant_id, table=input.table, row_id=input.row_id)
        write = MirrorRecordInput(tenant_id=input.tenant_id, table=input.table, row_id=input.row_id,
                                  retention=input.retention)

        def attempt() -> workflow.ActivityHandle[MirrorRecordResult]:
            return workflow.start_activity_method(
                MirrorActivities.mirror_record, write, start_to_close_timeout=input.policy.crm_timeout,
                heartbeat_timeout=input.policy.crm_heartbeat,
                retry_policy=crm_retry(input.policy))

        while True:
            self._changed = False
            result = await self._write(attempt, ids, input.policy)
            if result.outcome in ("gone", "erased"):
                return await self._end(result.outcome)
            if result.outcome == "stale":  # changed during the write: write the newer version
                continue
            self._set_state("synced")
            outcome = await self._retain(input, result)
            if outcome is not None:
                return await self._end(outcome)
            self._set_state("pending")

    async def _retain(self, input: RecordLifecycleInput, synced: MirrorRecordResult) -> str | None:
        """Wait out the window, then purge: the outcome, or None when the row must be written again."""
        purge_after = synced.purge_after
        while True:
            if workflow.info().is_continue_as_new_suggested():
                await self._drained()
                workflow.continue_as_new(input.model_copy(update={"escalate_at": None, "incident_open": False}))
            if await self._until(lambda: self._changed or self._redrive, purge_after):
                return None
            purge = await workflow.execute_activity_method(
                MirrorActivities.purge_record,
                PurgeRecordInput(tenant_id=input.tenant_id, table=input.table, row_id=input.row_id,
                                 as_of=workflow.now()),
                start_to_close_timeout=DB_TIMEOUT, retry_policy=DB_RETRY)
            if purge.purged:
                self._set_state("purged")
                return "purged"
            if not purge.exists:
                return "gone"
            if not purge.synced or purge.purge_after is None:
                return None  # changed without a signal reaching us (yet): never purge it, write it
            purge_after = purge.purge_after

    async def _end(self, outcome: str) -> LifecycleResult:
        if outcome != "purged":
            self._set_state(outcome)
        await self._drained()
        return LifecycleResult(outcome=outcome, crm_writes=self._crm_writes)
