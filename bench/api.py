"""`POST /v1/crm/create-record` throughput and latency with rate limits on vs off, in the same run.

The real app in-process (httpx ASGI transport): API-key check, the per-key moving-window limit in Redis,
the idempotency ledger, the tenant's field mapping and the HubSpot driver against an in-process HubSpot
sandbox, all in one process and one event loop (so CPU per request bounds the rate; the CPU column shows it).
Every request creates a new record (a fresh idempotency key). "on" uses the production limiter
with a limit too high to refuse anything, so the figure is the limiter's cost, not refusals; "Redis down"
points the limiter at a closed port (breaker open after 3 failures). The database is a fresh SQLite file
unless CRM_BENCH_DATABASE_URL names a PostgreSQL server; Redis is CRM_BENCH_REDIS_URL or 127.0.0.1:6379/15.

    .venv/bin/python bench/api.py [--requests 500] [--rounds 3] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.app import create_app  # noqa: E402
from api.context import AppContext  # noqa: E402
from api.keys import create_api_key  # noqa: E402
from api.ratelimit import RateLimiter  # noqa: E402
from api.temporal import TemporalGateway  # noqa: E402
from bench.common import database_url, pct  # noqa: E402
from settings import RateLimitSettings, Settings  # noqa: E402
from store.migrate import upgrade_to_head  # noqa: E402
from store.session import create_engine, session_factory  # noqa: E402
from tests.support.network import closed_port  # noqa: E402
from tests.support.sandbox_provider import SandboxDriverProvider  # noqa: E402
from tests.support.tenants import create_tenant  # noqa: E402


async def run(app: httpx.AsyncClient, key: str, requests: int, concurrency: int
              ) -> tuple[float, list[float], float]:
    """Send `requests` creates from `concurrency` callers; (requests/s, latencies in ms, CPU ms per request)."""
    latencies: list[float] = []
    queue = iter(range(requests))
    headers = {"authorization": f"Bearer {key}"}

    async def caller() -> None:
        for n in queue:
            started = time.perf_counter()
            unique = uuid.uuid4().hex
            response = await app.post("/v1/crm/create-record", headers=headers, json={
                "object": "customer", "idempotency_key": unique,
                "fields": {"first_name": "Bench", "last_name": f"Mark{n}", "email": f"{unique}@example.com"}})
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 201:
                raise RuntimeError(f"unexpected {response.status_code}: {response.text[:200]}")

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return requests / wall, latencies, cpu / requests * 1000


Mode = tuple[RateLimitSettings, str]


Pass = tuple[float, list[float], float, Counter[str]]


async def one_pass(sessions: async_sessionmaker[AsyncSession], engine: AsyncEngine, settings: Settings,
                   tenant: uuid.UUID, requests: int, concurrency: int) -> Pass:
    """One row's worth of traffic on a fresh app, key and CRM; (req/s, latencies, CPU ms/req, limiter counters)."""
    # A fresh CRM per pass: the sandbox scans its records on create, so a fuller one would be slower.
    drivers = SandboxDriverProvider(sessions)
    ctx = AppContext(settings=settings, engine=engine, sessions=sessions, temporal=TemporalGateway(settings.temporal),
                     extras={"drivers": drivers})
    key = (await create_api_key(sessions, tenant, "bench", ["crm:write"])).key
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(context=ctx)),
                                 base_url="http://bench") as app:
        rate, latencies, cpu = await run(app, key, requests, concurrency)
    counters: Counter[str] = Counter()
    limiter = ctx.extras.get("ratelimiter")
    if isinstance(limiter, RateLimiter):
        counters = limiter.counters
        await limiter.aclose()
    await drivers.aclose()
    return rate, latencies, cpu, counters


async def main(requests: int, concurrency: int, rounds: int, database: str) -> None:
    upgrade_to_head(database)
    redis_url = os.environ.get("CRM_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
    base = Settings(database_url=database, redis_url=redis_url, env="bench",
                    credential_encryption_key="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
    # A pool as deep as the callers: the default (5 + 10 overflow) would open and close a connection on
    # most checkouts at high concurrency, and the figure would be PostgreSQL's connect time.
    pooled = {"pool_size": concurrency + 4} if make_url(database).get_backend_name() == "postgresql" else {}
    engine = create_engine(database, **pooled)
    sessions = session_factory(engine)
    tenant = await create_tenant(sessions, settings={"portal_id": 62515})
    high = "1000000/minute"  # never refuses: the rows measure the limiter's cost, not refusals
    modes: dict[str, Mode] = {
        "off": (RateLimitSettings(enabled=False), redis_url),
        "on": (RateLimitSettings(per_api_key=high), redis_url),
        "on, Redis down": (RateLimitSettings(per_api_key=high), f"redis://127.0.0.1:{closed_port()}/0"),
    }
    settings = {mode: base.model_copy(update={"rate_limits": limits, "redis_url": url})
                for mode, (limits, url) in modes.items()}
    for mode in modes:  # warm-up: imports, pools, Lua script load
        await one_pass(sessions, engine, settings[mode], tenant, 100, concurrency)
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    latencies: dict[str, list[float]] = {mode: [] for mode in modes}
    cpus: dict[str, list[float]] = {mode: [] for mode in modes}
    counters: dict[str, Counter[str]] = {mode: Counter() for mode in modes}
    for _ in range(rounds):  # interleaved, so load from other processes hits every mode alike
        for mode in modes:
            rate, lat, cpu, count = await one_pass(sessions, engine, settings[mode], tenant, requests, concurrency)
            rates[mode].append(rate)
            latencies[mode] += lat
            cpus[mode].append(cpu)
            counters[mode] += count
    print(f"POST /v1/crm/create-record: {rounds} interleaved rounds x {requests} requests per mode, {concurrency} "
          f"concurrent callers; database {make_url(database).get_backend_name()}; CRM: in-process HubSpot sandbox")
    print(f"  {'rate limits':<16} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>11}   redis calls")
    for mode in modes:
        c = counters[mode]
        calls = f"{c['allowed'] + c['denied']} answered, {c['redis_errors'] + c['redis_timeouts']} failed, " \
                f"{c['skipped']} skipped by the breaker"
        print(f"  {mode:<16} {statistics.median(rates[mode]):>7,.0f} {pct(latencies[mode], 0.5):>8.1f} "
              f"{pct(latencies[mode], 0.99):>8.1f} {statistics.mean(cpus[mode]):>11.1f}   {calls}")
    change = statistics.median(rates["on"]) / statistics.median(rates["off"]) - 1
    print(f"  limits on vs off: {change * 100:+.1f}% requests/s (median of rounds), "
          f"{statistics.mean(cpus['on']) - statistics.mean(cpus['off']):+.2f} CPU ms per request")
    await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="per mode and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, database_url(Path(scratch)) as url:
        logging.getLogger("api.ratelimit").setLevel(logging.CRITICAL)  # the Redis-down row would log each failure
        asyncio.run(main(args.requests, args.concurrency, args.rounds, url))
