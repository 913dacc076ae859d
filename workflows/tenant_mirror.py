"""TenantMirrorWorkflow: one per tenant (`mirror:{tenant}`), alive only while the tenant has unsynced rows.

The relay starts or wakes it with signal-with-start when the tenant has news. Each pass (one activity) writes
the tenant's due rows in batches, in dependency order, and says what is left; the workflow then
- passes again at once while rows are due;
- waits on a durable timer until the earliest failed row may be tried again (or a `wake`), when only rows in
  backoff are left — no busy loop;
- sleeps out a rate limit (the provider's, or our budget for it) on a durable timer — no retry storm;
- parks on `auth_error` until `connection_fixed` (the connect flow sends it) or a `redrive`, looking again
  every `blocked_poll`;
- completes when nothing is unsynced: an idle tenant holds no open execution.
It continues-as-new every `passes_per_run` passes (or when the server suggests it). Retention is the sweep's.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate

with workflow.unsafe.imports_passed_through():
    from activities.mirror import MirrorActivities
    from activities.types import MirrorPassInput, MirrorPassResult
    from workflows import search_attributes as sa
    from workflows.types import ConnectionFixed, MirrorInput, MirrorResult, Redrive, Wake

# A pass fails as a whole only on a bug or a database outage (CRM failures are kept per row): retry it forever.
PASS_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))


@workflow.defn
class TenantMirrorWorkflow:
    """Mirror a tenant's class-(c) rows to its CRM until none is left unsynced."""

    def __init__(self) -> None:
        self._woken = False
        self._unpark = False
        self._state = ""
        self._backlog = -1

    @workflow.signal
    def wake(self, signal: Wake) -> None:
        self._woken = True

    @workflow.signal
    def redrive(self, signal: Redrive) -> None:
        self._woken = self._unpark = True

    @workflow.signal
    def connection_fixed(self, signal: ConnectionFixed) -> None:
        self._woken = self._unpark = True

    @workflow.query
    def sync_state(self) -> str:
        return self._state

    @workflow.run
    async def run(self, input: MirrorInput) -> MirrorResult:
        policy, synced, passes = input.policy, input.synced_before, 0
        while True:
            # Reset before the pass, not after: a `connection_fixed` that arrives while the pass fails on the
            # old credential must still unpark the wait that follows.
            self._woken = self._unpark = False
            step = await self._pass(input)
            passes, synced = passes + 1, synced + step.synced
            self._show(step.state, step.backlog)
            if step.park is not None:
                await self._until(lambda: self._unpark, workflow.now() + policy.blocked_poll)
            elif step.wait is not None:
                await workflow.sleep(step.wait)
            elif not step.more:
                if step.next_attempt_at is None and not self._woken:
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    return MirrorResult(synced=synced, passes=passes)
                await self._until(lambda: self._woken, step.next_attempt_at)
            if passes >= input.passes_per_run or workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(input.model_copy(update={"synced_before": synced}))

    async def _pass(self, input: MirrorInput) -> MirrorPassResult:
        policy = input.policy
        return await workflow.execute_activity_method(
            MirrorActivities.mirror_pass,
            MirrorPassInput(tenant_id=input.tenant_id, as_of=workflow.now(), retention=input.retention,
                            batch_size=policy.batch_size,
                            first_backoff=policy.first_backoff, max_backoff=policy.max_backoff,
                            blocked_poll=policy.blocked_poll, escalate_after=policy.escalate_after),
            start_to_close_timeout=policy.pass_timeout, heartbeat_timeout=policy.pass_heartbeat,
            retry_policy=PASS_RETRY)

    def _show(self, state: str, backlog: int) -> None:
        """Upsert `CrmSyncState` / `CrmBacklog` only when they change (each upsert is a history event)."""
        updates: list[SearchAttributeUpdate] = []  # type: ignore[type-arg]
        if state != self._state:
            self._state = state
            updates.append(sa.SYNC_STATE.value_set(state))
        if backlog != self._backlog:
            self._backlog = backlog
            updates.append(sa.BACKLOG.value_set(backlog))
        if updates:
            workflow.upsert_search_attributes(updates)

    async def _until(self, condition: Callable[[], bool], deadline: datetime | None) -> None:
        """Wait for `condition` or the deadline (a durable timer)."""
        if deadline is None:
            await workflow.wait_condition(condition)
            return
        remaining = deadline - workflow.now()
        if remaining > timedelta(0):
            try:
                await workflow.wait_condition(condition, timeout=remaining)
            except TimeoutError:
                pass

