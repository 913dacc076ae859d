"""ForgetWorkflow: the right to erasure for one subject of one tenant (DESIGN §3, Forget).

Order: hold the subject's rows and stop their lifecycles (so no pending mirror re-creates data) → find
the subject's CRM records → delete each → scrub every local row → look again and delete anything that
arrived meanwhile → record the request's outcome. The workflow sees only our ids and the keyed subject
hash; the activities read the sealed identifiers from the request row.

Resumable: every step is an idempotent activity over database state, so a crashed worker's replacement
continues where it stopped, and a new run for the same request (the retry route) acts only on what is
still pending or failed.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.erasure import ErasureActivities
    from activities.erasure_types import (
        DeleteTargetInput,
        ErasureStepInput,
        RecordFailureInput,
        StopLifecyclesInput,
        TargetsInput,
    )
    from workflows.forget_types import ForgetInput, ForgetResult

# Database steps wait out an outage instead of failing the erasure; the capped interval keeps them prompt.
DB_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
DB_TIMEOUT = timedelta(seconds=60)
CRM_TIMEOUT = timedelta(seconds=60)


def _error_code(exc: ActivityError) -> str:
    cause = exc.cause
    if isinstance(cause, ApplicationError) and cause.type:
        return cause.type
    return type(cause).__name__ if cause is not None else "activity_error"


@workflow.defn
class ForgetWorkflow:
    """Erases one subject: CRM records first, then every local row, with an outcome per CRM record."""

    def __init__(self) -> None:
        self._phase = "starting"

    @workflow.query
    def phase(self) -> str:
        return self._phase

    @workflow.run
    async def run(self, input: ForgetInput) -> ForgetResult:
        step = ErasureStepInput(request_id=input.request_id, tenant_id=input.tenant_id)
        crm_retry = RetryPolicy(initial_interval=timedelta(seconds=input.crm_initial_retry_seconds),
                                maximum_interval=timedelta(seconds=input.crm_max_retry_seconds),
                                maximum_attempts=input.crm_attempts)

        self._phase = "stopping_lifecycles"
        hold = await workflow.execute_activity_method(
            ErasureActivities.erasure_hold, step, start_to_close_timeout=DB_TIMEOUT, retry_policy=DB_RETRY)
        stopped = await workflow.execute_activity_method(
            ErasureActivities.erasure_stop_lifecycles,
            StopLifecyclesInput(request_id=input.request_id, workflow_ids=hold.lifecycle_workflow_ids),
            start_to_close_timeout=timedelta(minutes=5), heartbeat_timeout=timedelta(seconds=30),
            retry_policy=DB_RETRY)

        self._phase = "deleting_crm_records"
        found = await self._discover(step, crm_retry)
        await self._delete_targets(input, crm_retry, include_failed=True)

        self._phase = "scrubbing_local_rows"
        await workflow.execute_activity_method(
            ErasureActivities.erasure_scrub, step, start_to_close_timeout=DB_TIMEOUT, retry_policy=DB_RETRY)

        if found:
            # A record mirrored between the first look and the scrub would otherwise survive: look once more.
            self._phase = "rechecking_crm"
            await self._discover(step, crm_retry)
            await self._delete_targets(input, crm_retry, include_failed=False)

        self._phase = "finishing"
        finished = await workflow.execute_activity_method(
            ErasureActivities.erasure_finish, step, start_to_close_timeout=DB_TIMEOUT, retry_policy=DB_RETRY)
        self._phase = finished.status
        return ForgetResult(status=finished.status, outcomes=finished.outcomes,
                            local_rows_scrubbed=finished.local_rows_scrubbed,
                            lifecycles_cancelled=stopped.cancelled)

    async def _discover(self, step: ErasureStepInput, crm_retry: RetryPolicy) -> bool:
        """Find CRM records; False (with the failure recorded on the request) when the lookup failed."""
        try:
            await workflow.execute_activity_method(
                ErasureActivities.erasure_discover, step, start_to_close_timeout=CRM_TIMEOUT, retry_policy=crm_retry)
        except ActivityError as exc:
            await self._record_failure(step.request_id, None, "discover", exc)
            return False
        return True

    async def _record_failure(self, request_id: uuid.UUID, outcome_id: uuid.UUID | None, step: str,
                              exc: ActivityError) -> None:
        """A CRM step out of retries: recorded (error code only) for the operator and the retry route."""
        await workflow.execute_activity_method(
            ErasureActivities.erasure_record_failure,
            RecordFailureInput(request_id=request_id, outcome_id=outcome_id, step=step, error=_error_code(exc)),
            start_to_close_timeout=DB_TIMEOUT, retry_policy=DB_RETRY)

    async def _delete_targets(self, input: ForgetInput, crm_retry: RetryPolicy, *, include_failed: bool) -> None:
        targets = await workflow.execute_activity_method(
            ErasureActivities.erasure_targets, TargetsInput(request_id=input.request_id, include_failed=include_failed),
            start_to_close_timeout=DB_TIMEOUT, retry_policy=DB_RETRY)
        # One at a time: erasure is not urgent, and sequential calls stay well inside provider rate limits.
        for outcome_id in targets.outcome_ids:
            try:
                await workflow.execute_activity_method(
                    ErasureActivities.erasure_delete_target,
                    DeleteTargetInput(request_id=input.request_id, tenant_id=input.tenant_id, outcome_id=outcome_id),
                    start_to_close_timeout=CRM_TIMEOUT, retry_policy=crm_retry)
            except ActivityError as exc:
                await self._record_failure(input.request_id, outcome_id, "delete", exc)
