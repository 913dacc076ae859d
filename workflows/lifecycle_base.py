"""What both lifecycle workflows share: signals, search attributes, and the CRM-write loop.

The write loop: one activity handle per attempt cycle, retried by Temporal with capped exponential backoff
(a 429's Retry-After overrides the delay through `next_retry_delay`). Around it the workflow keeps a 24-hour
escalation deadline (one `crm_sync_failure` incident), answers `redrive` by cancelling the pending attempt
and starting a new one at once, and turns a non-retryable failure (auth_error, invalid data) into a wait
for `connection_fixed` / `redrive`, looking again every `blocked_poll` instead of burning retries.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.mirror import MirrorActivities
    from activities.types import IncidentInput
    from workflows import search_attributes as sa
    from workflows.types import ConnectionFixed, DependencySynced, LifecyclePolicy, RecordChanged, Redrive

T = TypeVar("T")

DB_TIMEOUT = timedelta(minutes=1)
DB_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))


def crm_retry(policy: LifecyclePolicy) -> RetryPolicy:
    # No attempt limit: the CRM write is the product's promise; people hear about it through the incident.
    return RetryPolicy(initial_interval=policy.first_backoff, backoff_coefficient=2.0,
                       maximum_interval=policy.max_backoff)


def failure_type(error: ActivityError) -> str:
    cause = error.cause
    if isinstance(cause, ApplicationError) and cause.type:
        return cause.type
    return type(cause).__name__ if cause is not None else "ActivityError"


class LifecycleBase:
    """Signals, state and the CRM-write loop of a lifecycle workflow (not a workflow itself)."""

    def __init__(self) -> None:
        self._changed = False
        self._redrive = False
        self._fixed = False
        self._state = ""
        self._escalate_at: datetime | None = None
        self._incident_open = False
        self._crm_writes = 0
        self._dependency_synced = False

    @workflow.signal
    def changed(self, signal: RecordChanged) -> None:
        self._changed = True

    @workflow.signal
    def redrive(self, signal: Redrive) -> None:
        self._redrive = True

    @workflow.signal
    def connection_fixed(self, signal: ConnectionFixed) -> None:
        self._fixed = True

    @workflow.signal
    def dependency_synced(self, signal: DependencySynced) -> None:
        self._dependency_synced = True

    @workflow.query
    def sync_state(self) -> str:
        return self._state

    def _set_state(self, state: str) -> None:
        """Upsert `CrmSyncState` only on a change (each upsert is a history event)."""
        if state != self._state:
            self._state = state
            workflow.upsert_search_attributes([sa.SYNC_STATE.value_set(state)])

    async def _until(self, condition: Callable[[], bool], deadline: datetime | None) -> bool:
        """Wait for `condition` or the deadline (a durable timer); whether the condition holds."""
        if deadline is None:
            await workflow.wait_condition(condition)
            return True
        remaining = deadline - workflow.now()
        if remaining > timedelta(0):
            try:
                await workflow.wait_condition(condition, timeout=remaining)
            except TimeoutError:
                pass
        return condition()

    async def _escalate_if_due(self, ids: IncidentInput) -> None:
        if self._incident_open or self._escalate_at is None or workflow.now() < self._escalate_at:
            return
        await workflow.execute_activity_method(MirrorActivities.open_sync_incident, ids,
                                               start_to_close_timeout=DB_TIMEOUT, retry_policy=DB_RETRY)
        self._incident_open = True
        self._set_state("escalated")

    def _deadline(self, *others: datetime | None) -> datetime | None:
        moments = [m for m in (None if self._incident_open else self._escalate_at, *others) if m is not None]
        return min(moments) if moments else None

    async def _write(self, start: Callable[[], workflow.ActivityHandle[T]], ids: IncidentInput,
                     policy: LifecyclePolicy) -> T:
        """Attempt the CRM write until it succeeds; escalate, redrive and wait out blocking failures."""
        if self._escalate_at is None:
            self._escalate_at = workflow.now() + policy.escalate_after
        while True:
            self._redrive = self._fixed = False
            handle = start()
            self._crm_writes += 1
            while not handle.done():
                await self._until(self._settled_or_redriven(handle), self._deadline())
                if not handle.done() and self._redrive:
                    handle.cancel()  # the attempt waiting in backoff is dropped; a new one starts now
                    break
                await self._escalate_if_due(ids)
            try:
                result = await handle
            except ActivityError as error:
                if self._redrive:
                    continue
                await self._wait_blocked(failure_type(error), ids, policy)
                continue
            outcome = getattr(result, "outcome", None)
            if outcome == "waiting":  # the row it hangs off is not in the CRM yet
                await self._wait_for_dependency(ids, policy)
                continue
            if outcome == "retry":  # it got there while we looked: the same write again, at once
                continue
            self._escalate_at, self._incident_open = None, False
            return result

    def _settled_or_redriven(self, handle: workflow.ActivityHandle[T]) -> Callable[[], bool]:
        return lambda: handle.done() or self._redrive

    async def _wait_blocked(self, kind: str, ids: IncidentInput, policy: LifecyclePolicy) -> None:
        """A failure retrying cannot fix: wait for the fix (signal) or the next slow look."""
        previous = self._state
        self._set_state("auth_wait" if kind == "AuthError" else "blocked")
        look_again = workflow.now() + policy.blocked_poll
        while not (self._redrive or self._fixed) and workflow.now() < look_again:
            await self._until(lambda: self._redrive or self._fixed, self._deadline(look_again))
            await self._escalate_if_due(ids)
        self._set_state("escalated" if self._incident_open else previous or "pending")

    async def _wait_for_dependency(self, ids: IncidentInput, policy: LifecyclePolicy) -> None:
        """Wait until the dependency syncs (signal), or a change, a redrive, or the next slow look — without
        spending CRM retries or cancelling anything: the attempt has ended."""
        def woken() -> bool:
            return self._dependency_synced or self._redrive or self._changed

        look_again = workflow.now() + policy.dependency_poll
        while not woken() and workflow.now() < look_again:
            await self._until(woken, self._deadline(look_again))
            await self._escalate_if_due(ids)
        self._dependency_synced = False

    async def _drained(self) -> None:
        await workflow.wait_condition(workflow.all_handlers_finished)
