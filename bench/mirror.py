"""Mirror figures on a real Temporal dev server, in one run:

- baseline      a trivial one-activity workflow, started concurrently: workflows/s on this server and worker;
- mirror        conversations recorded through the agent API (each with its customer and N messages), relayed,
                mirrored by the tenant's mirror workflow into an in-process HubSpot sandbox: rows mirrored/s from
                the first relay pass until every row is synced; Temporal history actions per mirrored row (starts,
                activities scheduled, timers, signals, search-attribute upserts, counted from the run's histories);
                open executions once all rows are synced; CRM calls per customer row;
- purge         synced rows past their window deleted by the sweep's batched, guarded purge: rows/s.

    .venv/bin/python bench/mirror.py [--conversations 40] [--messages 50]
    CRM_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/mirror.py
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.client import Client  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from api.lifecycle import mirror_workflow_id  # noqa: E402
from api.relay import running  # noqa: E402
from bench.common import database_url  # noqa: E402
from settings import Settings  # noqa: E402
from store import content  # noqa: E402
from store.base import utcnow  # noqa: E402
from store.migrate import upgrade_to_head  # noqa: E402
from store.models import Conversation, Customer, Message  # noqa: E402
from store.session import create_engine, session_factory  # noqa: E402
from tests.support.lifecycle import agent_api, eventually, is_closed, lifecycle_worker, relay_for  # noqa: E402
from tests.support.sandbox_provider import SandboxDriverProvider  # noqa: E402
from tests.support.tenants import create_tenant  # noqa: E402
from tests.support.trivial import TrivialWorkflow, trivial_step  # noqa: E402
from workflows import search_attributes  # noqa: E402
from workflows.types import MirrorPolicy  # noqa: E402


async def baseline(env: WorkflowEnvironment, count: int) -> float:
    queue = f"bench-trivial-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[TrivialWorkflow], activities=[trivial_step]):
        start = time.perf_counter()
        await asyncio.gather(*(env.client.execute_workflow(TrivialWorkflow.run, i, id=f"trivial-{uuid.uuid4()}",
                                                           task_queue=queue) for i in range(count)))
        return count / (time.perf_counter() - start)


ACTIONS = ("workflow_execution_started", "activity_task_scheduled", "timer_started", "workflow_execution_signaled",
           "upsert_workflow_search_attributes")


@dataclass
class MirrorFigures:
    rows: int
    elapsed: float
    actions: dict[str, int]
    open_after: int
    crm_calls: int
    customers: int


async def history_actions(client: Client, workflow_id: str) -> dict[str, int]:
    """Billable history actions over every run of the workflow id (continue-as-new chains included)."""
    counts = dict.fromkeys(ACTIONS, 0)
    async for run in client.list_workflows(f'WorkflowId = "{workflow_id}"'):
        history = await client.get_workflow_handle(run.id, run_id=run.run_id).fetch_history()
        for event in history.events:
            for name in ACTIONS:
                if event.HasField(f"{name}_event_attributes"):
                    counts[name] += 1
    return counts


async def mirror(env: WorkflowEnvironment, url: str, conversations: int, per: int) -> MirrorFigures:
    engine = create_engine(url)
    sessions = session_factory(engine)
    drivers = SandboxDriverProvider(sessions)
    tenant = await create_tenant(sessions)
    queue = f"bench-mirror-{uuid.uuid4()}"
    relay = relay_for(engine, sessions, env.client, queue, tenants=[tenant], policy=MirrorPolicy())  # production's
    settings = Settings(database_url=url, env="bench")
    async with agent_api(settings, engine, sessions, tenant) as api:
        for c in range(conversations):
            turns = [{"turn_id": str(k), "role": "agent" if k % 2 else "customer", "text": f"line {k} of {c}"}
                     for k in range(per)]
            response = await api.post("/api/agent/conversations", json={
                "customer": {"name": f"Bench Caller{c}", "phone": f"+1 415 555 {c:04d}"}, "messages": turns})
            assert response.status_code == 201, response.text
    total = conversations * (per + 2)  # each conversation, its customer and its messages
    hubspot = drivers.state("hubspot")
    async with lifecycle_worker(env.client, sessions, drivers, queue), running(relay):  # as in an API process
        start = time.perf_counter()
        while await unsynced(sessions, tenant):
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - start
        await eventually(lambda: is_closed(env.client, mirror_workflow_id(tenant)), within=60)
    open_after = len([r async for r in env.client.list_workflows(
        f'CrmTenant = "{tenant}" AND ExecutionStatus = "Running"')])
    actions = await history_actions(env.client, mirror_workflow_id(tenant))
    calls = sum(hubspot.calls.values())
    await drivers.aclose()
    await engine.dispose()
    return MirrorFigures(total, elapsed, actions, open_after, calls, conversations)


async def customers_only(env: WorkflowEnvironment, url: str, count: int) -> tuple[float, float]:
    """A tenant whose backlog is customers only (each with a phone): (CRM calls per customer row, rows/s)."""
    engine = create_engine(url)
    sessions = session_factory(engine)
    drivers = SandboxDriverProvider(sessions)
    tenant, queue = await create_tenant(sessions), f"bench-customers-{uuid.uuid4()}"
    relay = relay_for(engine, sessions, env.client, queue, tenants=[tenant], policy=MirrorPolicy())
    async with agent_api(Settings(database_url=url, env="bench"), engine, sessions, tenant) as api:
        for c in range(count):
            response = await api.post("/api/agent/customers", json={"name": f"Only Customer{c}",
                                                                    "phone": f"+1 628 555 {c:04d}"})
            assert response.status_code == 201, response.text
    async with lifecycle_worker(env.client, sessions, drivers, queue), running(relay):
        start = time.perf_counter()
        while await unsynced(sessions, tenant):
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - start
    calls = sum(drivers.state("hubspot").calls.values())
    await drivers.aclose()
    await engine.dispose()
    return calls / count, count / elapsed


async def unsynced(sessions: async_sessionmaker[AsyncSession], tenant: uuid.UUID) -> int:
    left = 0
    async with sessions() as session:
        for model in (Customer, Conversation, Message):
            left += int(await session.scalar(select(func.count()).select_from(model).where(
                model.tenant_id == tenant, model.sync_state != "synced")) or 0)
    return left


async def purge(url: str, rows: int) -> float:
    engine = create_engine(url)
    sessions = session_factory(engine)
    tenant, conversation, past = uuid.uuid4(), uuid.uuid4(), utcnow() - timedelta(minutes=1)
    batch = [{"id": uuid.uuid4(), "tenant_id": tenant, "conversation_id": conversation, "turn_id": str(i),
              "role": "agent", "text": "synced long ago", "spoken_at": past, "created_at": past, "updated_at": past,
              "sync_state": "synced", "crm_external_id": "n1", "synced_at": past, "sync_attempts": 1,
              "last_sync_error": None, "purge_after": past} for i in range(rows)]
    async with engine.begin() as connection:
        for i in range(0, rows, 5000):
            await connection.execute(insert(Message.__table__), batch[i:i + 5000])
    purged, start = 0, time.perf_counter()
    while True:  # exactly the sweep's loop: one transaction per batch of 500
        async with sessions() as session, session.begin():
            n = await content.purge(session, "messages", utcnow(), limit=500)
        purged += n
        if n < 500:
            break
    elapsed = time.perf_counter() - start
    assert purged == rows
    await engine.dispose()
    return rows / elapsed


async def run(url: str, conversations: int, per: int, purge_rows: int) -> None:
    upgrade_to_head(url)
    async with await WorkflowEnvironment.start_local(
            data_converter=pydantic_data_converter, search_attributes=list(search_attributes.ALL),
            dev_server_existing_path=shutil.which("temporal") or str(Path(sys.executable).parent / "temporal"),
            dev_server_log_level="error") as env:
        await baseline(env, 20)  # warm-up: server caches, worker pollers
        trivial = await baseline(env, conversations * 2)
        figures = await mirror(env, url, conversations, per)
        only_calls, only_rate = await customers_only(env, url, conversations * 5)
    purge_per_s = await purge(url, purge_rows)
    backend = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    rows_per_s, actions = figures.rows / figures.elapsed, sum(figures.actions.values())
    print(f"mirror on the Temporal dev server ({backend}, HubSpot sandbox in-process)")
    print(f"trivial one-activity workflow   {trivial:8.1f} workflows/s ({conversations * 2} started at once)")
    print(f"rows mirrored                   {rows_per_s:8.1f} rows/s ({conversations} conversations x {per} messages "
          f"+ their customers = {figures.rows} rows, {figures.elapsed:.1f} s to all synced)")
    print(f"  = {rows_per_s / trivial:.1f}x the trivial workflow rate (target >= 50x)")
    print(f"history actions per row         {actions / figures.rows:8.3f} ({actions} in the tenant mirror's "
          f"histories: " + ", ".join(f"{k.replace('_event', '')} {v}" for k, v in figures.actions.items())
          + "; target <= 0.5)")
    print(f"open executions after sync      {figures.open_after:8d} (target 0)")
    print(f"CRM calls per customer row      {figures.crm_calls / figures.customers:8.3f} (every sandbox call "
          f"of the run / customers: {figures.crm_calls} calls, {figures.customers} customers, {figures.rows} rows; "
          f"{figures.crm_calls / figures.rows:.3f} per row)")
    print(f"  customers only                {only_calls:8.3f} CRM calls per customer row ({conversations * 5} "
          f"customers with a phone: the batch match (the CRM may know the caller) + the batch write; "
          f"{only_rate:.0f} rows/s)")
    print(f"guarded batched purge           {purge_per_s:8.0f} rows/s ({purge_rows} synced message rows, "
          "500 per batch)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=40)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--purge-rows", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, database_url(Path(scratch)) as url:
        asyncio.run(run(url, args.conversations, args.messages, args.purge_rows))


if __name__ == "__main__":
    main()
