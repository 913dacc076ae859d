"""An expected CRM failure is one log line (kind, provider, ids) with no traceback; a bug keeps its traceback."""

from __future__ import annotations

import logging
import uuid

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from tests.support.failing_activity import FailOnceWorkflow, crm_step


async def _run(client: Client, task_queue: str, kind: str) -> str:
    async with Worker(client, task_queue=task_queue, workflows=[FailOnceWorkflow], activities=[crm_step]):
        result: str = await client.execute_workflow(FailOnceWorkflow.run, kind, id=f"fail-{uuid.uuid4()}",
                                                    task_queue=task_queue)
    return result


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info and r.levelno >= logging.INFO]


async def test_an_expected_crm_failure_is_one_line_without_a_traceback(
        temporal_client: Client, task_queue: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert await _run(temporal_client, task_queue, "crm") == "ApplicationError"
    lines = [r for r in caplog.records if r.name == "crm-sor.activities"]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING and lines[0].exc_info is None
    message = lines[0].getMessage()
    assert "UnavailableError" in message and "provider=hubspot" in message
    assert "workflow=fail-" in message and "attempt=1" in message
    assert _tracebacks(caplog) == []


async def test_a_bug_still_logs_its_traceback(
        temporal_client: Client, task_queue: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert await _run(temporal_client, task_queue, "bug") == "ApplicationError"
    assert [r for r in caplog.records if r.name == "crm-sor.activities"] == []
    assert _tracebacks(caplog)  # the SDK logs the failed activity with its stack
