"""A worker started while Temporal is unreachable waits for it (capped backoff) instead of exiting, and runs
workflows once the server is up."""

from __future__ import annotations

import asyncio
import shutil
import sys
import uuid
from pathlib import Path

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

import worker
from settings import Settings
from tests.support.network import closed_port
from tests.support.trivial import TrivialWorkflow, trivial_step
from workflows import search_attributes

pytestmark = [pytest.mark.integration]


async def test_a_worker_started_before_temporal_waits_and_then_serves(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    config = settings.model_copy(update={"temporal": settings.temporal.model_copy(
        update={"address": f"127.0.0.1:{port}"})})
    # The production loop with a trivial workflow registered, so the test can see it serve.
    monkeypatch.setattr(worker, "WORKFLOWS", [*worker.WORKFLOWS, TrivialWorkflow])
    real_build = worker.build_activities
    monkeypatch.setattr(worker, "build_activities", lambda s, engine=None: [*real_build(s, engine), trivial_step])
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run_worker(config, stop))
    await asyncio.sleep(2.5)  # two failed connection attempts at least: it must still be waiting, not gone
    assert not running.done()
    binary = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    async with await WorkflowEnvironment.start_local(
            port=port, data_converter=pydantic_data_converter, dev_server_existing_path=binary,
            search_attributes=list(search_attributes.ALL), dev_server_log_level="error") as env:
        result = await env.client.execute_workflow(TrivialWorkflow.run, 7, id=f"trivial-{uuid.uuid4()}",
                                                   task_queue=config.temporal.task_queue)
        assert result == 8
        stop.set()
        await asyncio.wait_for(running, 30)
