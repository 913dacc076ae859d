"""The stored history of a deferred-then-placed outbound call still replays against today's workflow code.

Recorded by tests/integration/test_webhooks_outbound.py::test_at_2230_callee_time_the_call_waits_for_0800 with
CRM_RECORD_HISTORIES=1. A change that would break calls waiting on their timer fails here: gate it with
`workflow.patched`, then re-record.
"""

from __future__ import annotations

from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.outbound_call import OutboundCallWorkflow

HISTORY = Path(__file__).parents[2] / "histories" / "outbound_call_deferred_then_placed.json"


async def test_the_stored_history_of_a_deferred_call_still_replays() -> None:
    history = WorkflowHistory.from_json("outbound-call-replay", HISTORY.read_text())
    replayer = Replayer(workflows=[OutboundCallWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history)
    assert result.replay_failure is None
    timers = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
    assert len(timers) == 1  # the night's wait: this history exercises the deferral path
