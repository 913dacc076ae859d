"""Mirror figures on a real Temporal dev server, in one run:

- baseline      a trivial one-activity workflow, started concurrently: workflows/s on this server and worker;
- mirror        conversations recorded through the agent API (each with its customer and N messages), relayed,
                mirrored by the lifecycle workflows into an in-process HubSpot sandbox: messages mirrored/s from
                the first relay pass until every message row is synced, and CRM calls per message;
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
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from api.relay import running  # noqa: E402
from bench.common import database_url  # noqa: E402
from settings import Settings  # noqa: E402
from store import content  # noqa: E402
from store.base import utcnow  # noqa: E402
from store.migrate import upgrade_to_head  # noqa: E402
from store.models import Message  # noqa: E402
from store.session import create_engine, session_factory  # noqa: E402
from tests.support.lifecycle import agent_api, lifecycle_worker, relay_for  # noqa: E402
from tests.support.sandbox_provider import SandboxDriverProvider  # noqa: E402
from tests.support.tenants import create_tenant  # noqa: E402
from tests.support.trivial import TrivialWorkflow, trivial_step  # noqa: E402
from workflows import search_attributes  # noqa: E402
from workflows.types import LifecyclePolicy  # noqa: E402


async def baseline(env: WorkflowEnvironment, count: int) -> float:
    queue = f"bench-trivial-{uuid.uuid4()}"
    async with Worker(env.client, task_queue=queue, workflows=[TrivialWorkflow], activities=[trivial_step]):
        start = time.perf_counter()
        await asyncio.gather(*(env.client.execute_workflow(TrivialWorkflow.run, i, id=f"trivial-{uuid.uuid4()}",
                                                           task_queue=queue) for i in range(count)))
        return count / (time.perf_counter() - start)


async def mirror(env: WorkflowEnvironment, url: str, conversations: int, per: int) -> tuple[float, float, float]:
    engine = create_engine(url)
    sessions = session_factory(engine)
    drivers = SandboxDriverProvider(sessions)
    tenant = await create_tenant(sessions)
    queue = f"bench-mirror-{uuid.uuid4()}"
    # Production's retry policy and batching (25 messages or 1 s after the first waiting one).
    relay = relay_for(engine, sessions, env.client, queue, tenants=[tenant], policy=LifecyclePolicy(),
                      debounce=timedelta(seconds=1))
    settings = Settings(database_url=url, env="bench")
    async with agent_api(settings, engine, sessions, tenant) as api:
        for c in range(conversations):
            turns = [{"turn_id": str(k), "role": "agent" if k % 2 else "customer", "text": f"line {k} of {c}"}
                     for k in range(per)]
            response = await api.post("/api/agent/conversations", json={
                "customer": {"name": f"Bench Caller{c}", "phone": f"+1 415 555 {c:04d}"}, "messages": turns})
            assert response.status_code == 201, response.text
    total = conversations * per
    hubspot = drivers.state("hubspot")
    async with lifecycle_worker(env.client, sessions, drivers, queue), running(relay):  # as in an API process
        start = time.perf_counter()
        while True:
            async with sessions() as session:
                synced = await session.scalar(select(func.count()).select_from(Message).where(
                    Message.tenant_id == tenant, Message.sync_state == "synced"))
            if synced == total:
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - start
    calls = sum(hubspot.calls.values())
    await drivers.aclose()
    await engine.dispose()
    return total / elapsed, calls / total, elapsed


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
        messages_per_s, calls_per_message, elapsed = await mirror(env, url, conversations, per)
    purge_per_s = await purge(url, purge_rows)
    backend = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(f"mirror on the Temporal dev server ({backend}, HubSpot sandbox in-process)")
    print(f"trivial one-activity workflow   {trivial:8.1f} workflows/s ({conversations * 2} started at once)")
    print(f"messages mirrored               {messages_per_s:8.1f} messages/s ({conversations} conversations x {per} "
          f"messages + their customers: {conversations * 2} lifecycles, {elapsed:.1f} s to all synced)")
    print(f"  = {messages_per_s / trivial:.1f} messages mirrored in the time the server completes one trivial workflow")
    print(f"CRM calls per message           {calls_per_message:8.3f} (every sandbox call of the run / messages)")
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
