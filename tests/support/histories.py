"""Stored workflow histories for the replay tests (tests/unit/workflows/test_replay.py).

Tests that run a workflow type to the end call `keep_history`; with `CRM_RECORD_HISTORIES=1` in the
environment the history is written to tests/histories/<name>.json (re-record after a change that is gated with
`workflow.patched`, never to paper over a determinism break).
"""

from __future__ import annotations

import os
from pathlib import Path

from temporalio.client import Client

HISTORIES = Path(__file__).resolve().parents[1] / "histories"


async def keep_history(client: Client, workflow_id: str, name: str) -> None:
    if not os.environ.get("CRM_RECORD_HISTORIES"):
        return
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    (HISTORIES / f"{name}.json").write_text(history.to_json())
