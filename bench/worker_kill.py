"""Seconds from a worker's SIGKILL mid CRM write to the write being retried on another worker.

A worker process (tests/support/worker_process.py) SIGKILLs itself right after the HubSpot sandbox answered a
contact create, before our ledger heard back. A second worker is started on the same task queue as soon as the
kill is seen; the figure is the time from the kill to the first CRM request of the retried attempt. Production's
lifecycle policy (heartbeat timeout, first backoff): the killed attempt is noticed by its missing heartbeat.

    .venv/bin/python bench/worker_kill.py [--runs 3]
    CRM_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/worker_kill.py
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from bench.common import database_url, pct  # noqa: E402
from sandboxes import hubspot as hubspot_sandbox  # noqa: E402
from sandboxes.serve import serve_in_task  # noqa: E402
from settings import Settings  # noqa: E402
from store.migrate import upgrade_to_head  # noqa: E402
from store.session import create_engine, session_factory  # noqa: E402
from tests.support.lifecycle import agent_api, eventually, lifecycle_worker, relay_for, synced  # noqa: E402
from tests.support.sandbox_provider import SandboxDriverProvider  # noqa: E402
from tests.support.tenants import create_tenant  # noqa: E402
from workflows import search_attributes  # noqa: E402
from workflows.types import MirrorPolicy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class FirstRequest(httpx.AsyncBaseTransport):
    """Notes when the first request goes out (the retried attempt's first CRM call)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner, self.at = inner, None  # type: ignore[var-annotated]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.at is None:
            self.at = time.monotonic()
        return await self.inner.handle_async_request(request)


async def one_run(env: WorkflowEnvironment, url: str, base_url: str) -> float:
    engine = create_engine(url)
    sessions = session_factory(engine)
    tenant, queue = await create_tenant(sessions), f"bench-kill-{uuid.uuid4()}"
    relay = relay_for(engine, sessions, env.client, queue, tenants=[tenant], policy=MirrorPolicy())
    doomed = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.worker_process",
        "--temporal", env.client.service_client.config.target_host,
        "--task-queue", queue, "--database-url", url, "--sandbox", f"hubspot={base_url}",
        "--kill-after", "POST /crm/v3/objects/contacts/batch/upsert", cwd=ROOT, stdout=asyncio.subprocess.PIPE)
    assert doomed.stdout is not None
    assert await asyncio.wait_for(doomed.stdout.readline(), 60) == b"worker ready\n"
    async with agent_api(Settings(database_url=url, env="bench"), engine, sessions, tenant) as api:
        customer = (await api.post("/api/agent/customers", json={"name": "Killed Midwrite"})).json()
    await relay.drain()
    await asyncio.wait_for(doomed.wait(), 60)
    killed_at = time.monotonic()
    probe: list[FirstRequest] = []
    survivor = SandboxDriverProvider(sessions, urls={"hubspot": base_url},
                                     wrap=lambda inner: probe.append(FirstRequest(inner)) or probe[-1])
    async with lifecycle_worker(env.client, sessions, survivor, queue):
        await eventually(lambda: synced(sessions, "customers", tenant, uuid.UUID(customer["id"])), within=120)
    await survivor.aclose()
    await engine.dispose()
    first = min(p.at for p in probe if p.at is not None)
    return first - killed_at


async def run(url: str, runs: int) -> None:
    upgrade_to_head(url)
    policy = MirrorPolicy()
    async with await WorkflowEnvironment.start_local(
            data_converter=pydantic_data_converter, search_attributes=list(search_attributes.ALL),
            dev_server_existing_path=shutil.which("temporal") or str(Path(sys.executable).parent / "temporal"),
            dev_server_log_level="error") as env, serve_in_task(hubspot_sandbox.create_app()) as base_url:
        delays = [await one_run(env, url, base_url) for _ in range(runs)]
    print(f"worker SIGKILL mid CRM write -> retried on another worker ({runs} runs; heartbeat timeout "
          f"{policy.pass_heartbeat.total_seconds():g} s, first backoff {policy.first_backoff.total_seconds():g} s)")
    print(f"  p50 {pct(delays, 0.5):6.2f} s   max {max(delays):6.2f} s   runs: "
          + ", ".join(f"{d:.2f}" for d in delays))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, database_url(Path(scratch)) as url:
        asyncio.run(run(url, args.runs))


if __name__ == "__main__":
    main()
