"""OutboundCallWorkflow: one inbound CRM event → at most one consent-gated outbound call request.

Its id is `outbound-call:{tenant}:{event row}` (workflows/outbound_types.py), so a redelivered webhook, a
redispatch after a crash or a poll that sees the change again cannot start a second one; the call request row
is unique per event as a second guard. The gates are re-checked by the activity right before each attempt;
outside the callee's permitted window the workflow waits on a durable timer until the next permitted moment,
then checks again (so a consent revoked meanwhile wins). A `recheck` signal wakes it early (e.g. after a
revocation, to end it at once).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.outbound import OutboundActivities
    from activities.outbound_types import GateInput, MatchTriggerInput
    from workflows.outbound_types import ACTIVITY_TIMEOUT, OutboundCallInput, OutboundCallResult

RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=5))
MIN_WAIT = timedelta(seconds=1)


@workflow.defn
class OutboundCallWorkflow:
    def __init__(self) -> None:
        self._recheck = False

    @workflow.signal
    def recheck(self) -> None:
        self._recheck = True

    @workflow.run
    async def run(self, input: OutboundCallInput) -> OutboundCallResult:
        match = await workflow.execute_activity_method(
            OutboundActivities.outbound_match_trigger,
            MatchTriggerInput(tenant_id=input.tenant_id, event_row_id=input.event_row_id, now=workflow.now()),
            start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=RETRY)
        if match.call_request_id is None:
            return OutboundCallResult(outcome="no_trigger", reason=match.reason)
        while True:
            gate = await workflow.execute_activity_method(
                OutboundActivities.outbound_gate_and_place,
                GateInput(tenant_id=input.tenant_id, call_request_id=match.call_request_id, now=workflow.now()),
                start_to_close_timeout=ACTIVITY_TIMEOUT, retry_policy=RETRY)
            if gate.action == "place":
                return OutboundCallResult(outcome="placed", reason=gate.reason, call_request_id=match.call_request_id)
            if gate.action == "block" or gate.until is None:
                return OutboundCallResult(outcome="blocked", reason=gate.reason, call_request_id=match.call_request_id)
            self._recheck = False
            wait = max(gate.until - workflow.now(), MIN_WAIT)
            try:
                await workflow.wait_condition(lambda: self._recheck, timeout=wait)
            except TimeoutError:
                pass  # the permitted moment has come: check again
