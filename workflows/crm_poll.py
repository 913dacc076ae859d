"""CrmPollWorkflow: one run per Schedule tick for a tenant whose CRM sends no webhooks.

Polls each configured object's recent changes (activities/crm_poll.py) and starts one OutboundCallWorkflow per
new event, with the same deterministic id a webhook's event would get; the child is abandoned on purpose: a
deferred call outlives the tick that found it.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from activities.crm_poll import CrmPollActivities
    from activities.outbound_types import PollInput
    from workflows.outbound_call import OutboundCallWorkflow
    from workflows.outbound_types import (
        ACTIVITY_TIMEOUT,
        CrmPollInput,
        CrmPollResult,
        OutboundCallInput,
        outbound_call_workflow_id,
    )

RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=1), maximum_attempts=5)


@workflow.defn
class CrmPollWorkflow:
    @workflow.run
    async def run(self, input: CrmPollInput) -> CrmPollResult:
        started = 0
        for object_name in input.objects:
            polled = await workflow.execute_activity_method(
                CrmPollActivities.crm_poll_recent,
                PollInput(tenant_id=input.tenant_id, object=object_name, now=workflow.now(), limit=input.limit),
                start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=RETRY)
            for row_id in polled.new_event_row_ids:
                try:
                    await workflow.start_child_workflow(
                        OutboundCallWorkflow.run, OutboundCallInput(tenant_id=input.tenant_id, event_row_id=row_id),
                        id=outbound_call_workflow_id(input.tenant_id, row_id), task_queue=input.task_queue,
                        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                        parent_close_policy=workflow.ParentClosePolicy.ABANDON)
                    started += 1
                except WorkflowAlreadyStartedError:
                    pass
        return CrmPollResult(new_events=started)
