"""Every workflow type the worker runs has a stored history that still replays against today's code: a change
that would break running workflows (non-determinism) fails CI instead of production.

Histories come from real runs in the integration tests (see tests/support/histories.py); the forget workflow's
is recorded by its history-scan test (`CRM_RECORD_FORGET_HISTORY=1`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

import worker
from tests.support.histories import HISTORIES

STORED = sorted(HISTORIES.glob("*.json"))


def _workflow_type(path: Path) -> str:
    first = json.loads(path.read_text())["events"][0]
    return str(first["workflowExecutionStartedEventAttributes"]["workflowType"]["name"])


def test_every_workflow_type_has_a_stored_history() -> None:
    recorded = {_workflow_type(path) for path in STORED}
    assert {cls.__name__ for cls in worker.WORKFLOWS} <= recorded


@pytest.mark.parametrize("path", STORED, ids=lambda p: p.stem)
async def test_the_stored_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=worker.WORKFLOWS, data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
