"""A workflow whose one activity fails once, as an expected CRM failure or as a bug (log-shape tests)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ApplicationErrorCategory

with workflow.unsafe.imports_passed_through():
    from activities.contained import contained
    from drivers.errors import UnavailableError


@activity.defn
@contained
async def crm_step(kind: str) -> None:
    if kind == "crm":
        try:
            raise UnavailableError("POST failed with HTTP 503", provider="hubspot", status_code=503)
        except UnavailableError as exc:
            raise ApplicationError(exc.code, type=type(exc).__name__,
                                   category=ApplicationErrorCategory.BENIGN) from None
    raise KeyError("a bug")  # `contained` turns it into an ApplicationError holding the type only


@workflow.defn
class FailOnceWorkflow:
    @workflow.run
    async def run(self, kind: str) -> str:
        try:
            await workflow.execute_activity(crm_step, kind, start_to_close_timeout=timedelta(seconds=30),
                                            retry_policy=RetryPolicy(maximum_attempts=1))
        except ActivityError as exc:
            return type(exc.cause).__name__
        return "ok"
