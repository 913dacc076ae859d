"""Hot-path ingest figures: what the agent waits for when it records a row, against a raw single-row insert.

Measured in one run on the same database and engine:
- raw insert   one `INSERT INTO customers` in its own transaction (SQLAlchemy Core, no API, no outbox), the
               baseline of issue 10; also the same INSERT in autocommit (no BEGIN/COMMIT round trips), the
               strictest baseline, since the ingest's one statement runs that way too;
- ingest       `POST /api/agent/customers` through the real app in-process (JWT check, validation, tenant
               check, row + outbox intent in one transaction); Temporal and the CRM are not involved by design;
- messages     `POST /api/agent/conversations/{id}/messages` with 10 turns per request (rows/s counts messages).
Sequential requests give p50/p99 latency; `--concurrency` clients give throughput. Raw and ingest take turns
in `--rounds` rounds, so load that comes and goes on a shared machine weighs on both alike. The API runs
in-process and gets each request as an ASGI server hands it over (`AsgiClient`); `--httpx` sends through
httpx's ASGITransport instead, whose own client-side work (~1 ms CPU a call) then counts against the API.

    .venv/bin/python bench/ingest.py [--requests 2000] [--concurrency 16] [--rounds 10] [--httpx]
    CRM_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/ingest.py
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.app import create_app  # noqa: E402
from api.auth import mint_token  # noqa: E402
from api.context import AppContext  # noqa: E402
from api.temporal import TemporalGateway  # noqa: E402
from bench.common import AsgiClient, database_url, pct  # noqa: E402
from settings import Settings, TemporalSettings  # noqa: E402
from store.base import utcnow  # noqa: E402
from store.migrate import upgrade_to_head  # noqa: E402
from store.models import Customer, Tenant  # noqa: E402
from store.session import create_engine, session_factory  # noqa: E402


async def timed(calls: dict[str, Callable[[int], Awaitable[None]]], n: int, concurrency: int, rounds: int
                ) -> dict[str, tuple[list[float], float]]:
    """Per kind: (per-call seconds of sequential calls, calls/s with `concurrency` clients).

    The kinds take turns in `rounds` rounds (a slice of sequential calls each, then a slice of concurrent ones),
    so a change in the machine's load during the run (other processes, autovacuum) falls on all kinds alike
    instead of on whichever happened to run then.
    """
    latencies: dict[str, list[float]] = {name: [] for name in calls}
    busy: dict[str, float] = dict.fromkeys(calls, 0.0)
    per_round = max(1, n // rounds)
    ids = iter(range(10 * n * len(calls)))
    for _ in range(rounds):
        for name, call in calls.items():
            for _ in range(per_round):
                i = next(ids)
                start = time.perf_counter()
                await call(i)
                latencies[name].append(time.perf_counter() - start)
        for name, call in calls.items():
            queue = iter([next(ids) for _ in range(per_round)])

            async def client(call: Callable[[int], Awaitable[None]] = call, queue: Iterator[int] = queue) -> None:
                for i in queue:
                    await call(i)

            start = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(concurrency)))
            busy[name] += time.perf_counter() - start
    return {name: (latencies[name], per_round * rounds / busy[name]) for name in calls}


def line(name: str, latencies: list[float], throughput: float, per_call: int = 1) -> str:
    return (f"{name:<34} p50 {pct(latencies, 0.5) * 1000:7.2f} ms   p99 {pct(latencies, 0.99) * 1000:7.2f} ms   "
            f"{len(latencies) * per_call / sum(latencies):8.0f} rows/s sequential   "
            f"{throughput * per_call:8.0f} rows/s concurrent")


async def run(url: str, requests: int, concurrency: int, rounds: int, via_httpx: bool) -> None:
    upgrade_to_head(url)
    engine = create_engine(url)  # the API's own engine settings (api/app.py builds it the same way)
    sessions = session_factory(engine)
    settings = Settings(database_url=url, env="bench")
    tenant = uuid.uuid4()
    async with sessions() as session, session.begin():
        session.add(Tenant(id=tenant, name="bench", provider="hubspot", status="active"))
    # Temporal is unreachable on purpose: the hot path must not need it.
    context = AppContext(settings=settings, engine=engine, sessions=sessions,
                         temporal=TemporalGateway(TemporalSettings(address="127.0.0.1:1")))
    token = mint_token(settings, subject="bench-agent", role="agent", tenant_id=tenant)
    app = create_app(context=context)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench",
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        api = client if via_httpx else AsgiClient(app, token)

        def raw_row(i: int) -> Any:
            now = utcnow()
            return insert(Customer).values(
                id=uuid.uuid4(), tenant_id=tenant, name=f"Raw Customer {i}", phone="+14155550100", fields={},
                created_at=now, updated_at=now, sync_state="pending", sync_attempts=0)

        async def raw(i: int) -> None:
            async with engine.begin() as connection:
                await connection.execute(raw_row(i))

        async def raw_autocommit(i: int) -> None:  # the same INSERT without BEGIN/COMMIT: the strictest baseline
            async with engine.connect() as connection:
                await (await connection.execution_options(isolation_level="AUTOCOMMIT")).execute(raw_row(i))

        async def ingest(i: int) -> None:
            response = await api.post("/api/agent/customers", json={
                "name": f"Bench Customer {i}", "phone": "+1 415 555 0100", "fields": {"city": "Oakland"}})
            assert response.status_code == 201, response.text

        conversation = (await api.post("/api/agent/conversations", json={"customer": {"name": "Bench"}})).json()["id"]

        async def messages(i: int) -> None:
            turns = [{"turn_id": f"{i}-{k}", "role": "customer" if k % 2 else "agent", "text": f"turn {k} of {i}"}
                     for k in range(10)]
            response = await api.post(f"/api/agent/conversations/{conversation}/messages", json={"messages": turns})
            assert response.status_code == 202 and response.json()["accepted"] == 10, response.text

        for warm in (raw, raw_autocommit, ingest, messages):  # connections, statement caches, JIT-free warm-up
            for i in range(20):
                await warm(10_000_000 + i)
        figures = await timed({"raw": raw, "bare": raw_autocommit, "ingest": ingest}, requests, concurrency, rounds)
        (raw_lat, raw_tp), (bare_lat, bare_tp), (ing_lat, ing_tp) = figures["raw"], figures["bare"], figures["ingest"]
        msg_lat, msg_tp = (await timed({"messages": messages}, requests // 10, concurrency, rounds))["messages"]
    await engine.dispose()
    backend = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(f"ingest hot path ({backend}, {requests} sequential + {requests} with {concurrency} concurrent clients, "
          f"raw and ingest taking turns in {rounds} rounds; requests through "
          f"{'httpx ASGITransport' if via_httpx else 'direct ASGI calls'})")
    print(line("raw single-row INSERT", raw_lat, raw_tp))
    print(line("  the same, autocommit (no BEGIN)", bare_lat, bare_tp))
    print(line("POST /api/agent/customers", ing_lat, ing_tp))
    print(line("POST …/messages (10 per request)", msg_lat, msg_tp, per_call=10))
    print(f"ingest / raw latency at p50: {pct(ing_lat, 0.5) / pct(raw_lat, 0.5):.2f}x   "
          f"at p99: {pct(ing_lat, 0.99) / pct(raw_lat, 0.99):.2f}x   "
          f"concurrent throughput ratio: {ing_tp / raw_tp:.2f}x (row + outbox intent + auth + validation)")
    print(f"against the autocommit INSERT: p50 {pct(ing_lat, 0.5) / pct(bare_lat, 0.5):.2f}x   "
          f"p99 {pct(ing_lat, 0.99) / pct(bare_lat, 0.99):.2f}x   throughput {ing_tp / bare_tp:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--httpx", action="store_true", help="send through httpx's ASGITransport instead "
                        "(its client-side work then counts in the ingest figures)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, database_url(Path(scratch)) as url:
        asyncio.run(run(url, args.requests, args.concurrency, args.rounds, args.httpx))


if __name__ == "__main__":
    main()
