"""Voice-grade lookups: `POST /api/tools/crm_lookup_customer` against a HubSpot sandbox with injected latency.

The real app in-process, each request handed over as an ASGI server hands it (`bench.common.AsgiClient`;
`--httpx` sends through httpx's ASGITransport instead, whose own client-side work then counts against the route):
agent JWT, the per-(tenant, tool) limit in Redis, the vault's driver provider (tenant row and opened credential from
the process's few-second copies, an audit row per opening, provider budget in Redis, phone index), the tenant's
field mapping (a few-second copy too), and the HubSpot driver against the in-process HubSpot sandbox. A transport
in front of the sandbox sleeps `--search-ms` for searches and `--get-ms` for every other call, and adds up the time
each lookup spent in provider calls, so "overhead" is exactly the route's time minus its provider time, per request.

Rows (callers one at a time unless said: each after the work that followed the previous answer, its index write,
is done; the CPU row counts that work too):
- bare: the HubSpot driver alone on the same transport (a search; a get by id): the provider call itself;
- cold: a number the index does not know (index miss, one search, the answer remembered);
- warm: the same numbers again (index hit: one get by id, verified);
- stalled: the provider answers after `--stall-ms`: the route's answer time against the deadline;
- 20 concurrent callers with unknown numbers under HubSpot's search limit (4/s in the sandbox and the budget),
  then the same 20 callers again once the late answers are in.
The tenant's region is AE and callers give national numbers (050 …); the CRM holds them as +971 … .
Database: a fresh SQLite file unless CRM_BENCH_DATABASE_URL names a PostgreSQL server; Redis: CRM_BENCH_REDIS_URL
(default 127.0.0.1:6379/15).

    .venv/bin/python bench/lookup.py [--lookups 200] [--search-ms 150] [--get-ms 60] [--stall-ms 3000] [--httpx]
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import logging
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.app import create_app  # noqa: E402
from api.auth import mint_token  # noqa: E402
from api.context import AppContext  # noqa: E402
from api.crm import load_field_map  # noqa: E402
from api.lookup import settle_late_lookups  # noqa: E402
from api.temporal import TemporalGateway  # noqa: E402
from bench.common import AsgiClient, database_url, pct  # noqa: E402
from drivers.auth import BearerAuth  # noqa: E402
from drivers.budget import ProviderBudget  # noqa: E402
from drivers.hubspot import HubSpotDriver  # noqa: E402
from drivers.provider import RateLimit  # noqa: E402
from sandboxes import hubspot as hubspot_sandbox  # noqa: E402
from settings import LookupSettings, RateLimitSettings, Settings  # noqa: E402
from store.migrate import upgrade_to_head  # noqa: E402
from store.phone_index import PhoneIndex  # noqa: E402
from store.session import create_engine, session_factory  # noqa: E402
from tests.support.tenants import create_tenant  # noqa: E402
from vault.connections import Actor  # noqa: E402
from vault.credentials import CredentialVault  # noqa: E402
from vault.provider import VaultDriverProvider  # noqa: E402

SPENT: contextvars.ContextVar[list[float]] = contextvars.ContextVar("provider_seconds")
LOOKUP = "/api/tools/crm_lookup_customer"
HUBSPOT_LIMITS = HubSpotDriver.rate_limits


class ProviderLatency(httpx.AsyncBaseTransport):
    """The provider's latency, injected: searches take `search` seconds, other calls `other` (or `stall` when
    set); the time every call took is added to the current lookup's SPENT."""

    def __init__(self, inner: httpx.AsyncBaseTransport, search: float, other: float) -> None:
        self.inner, self.search, self.other = inner, search, other
        self.stall: float | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        delay = self.search if request.url.path.endswith("/search") else self.other
        await asyncio.sleep(self.stall if self.stall is not None else delay)
        response = await self.inner.handle_async_request(request)
        spent = SPENT.get(None)
        if spent is not None:
            spent[0] += time.perf_counter() - started
        return response


async def timed(call: Callable[[], Awaitable[Any]]) -> tuple[Any, float, float]:
    """(result, elapsed ms, ms spent in provider calls)."""
    spent = [0.0]
    token = SPENT.set(spent)
    started = time.perf_counter()
    try:
        result = await call()
    finally:
        SPENT.reset(token)
    return result, (time.perf_counter() - started) * 1000, spent[0] * 1000


def national(n: int) -> tuple[str, str]:
    """(as the CRM stores it, as the caller gives it): distinct UAE mobiles."""
    digits = f"{n:07d}"
    return f"+971 50 {digits[:3]} {digits[3:]}", f"050 {digits[:3]} {digits[3:]}"


def summary(name: str, values: list[float], extra: str = "") -> str:
    return (f"  {name:<44} p50 {pct(values, 0.5):7.1f}  p95 {pct(values, 0.95):7.1f}  p99 {pct(values, 0.99):7.1f}"
            f"  max {max(values):7.1f} ms{extra}")


async def stages(drivers: VaultDriverProvider, vault: CredentialVault, index: PhoneIndex, tenant: uuid.UUID,
                 n: int = 50) -> None:
    """Where the overhead goes: each database step of the route on its own (p50 of n, ms). The tenant row, the
    credential and the mapping are the process's copies on the hot path; a miss costs the "read"/"decrypt" rows."""
    actor = Actor(type="tool", id="bench", purpose="crm_lookup_customer")

    async def opened() -> None:
        _, audit = await vault.opened(tenant, actor, provider="hubspot")
        if audit is not None:
            await audit

    steps: dict[str, Callable[[], Awaitable[Any]]] = {
        "tenant row (copy)": lambda: drivers.tenant(tenant),
        "tenant row (read)": lambda: drivers._read_tenant(tenant),
        "credential (copy) + audit row": opened,
        "credential decrypt + audit row (miss)": lambda: vault.load(tenant, actor, provider="hubspot"),
        "index recall": lambda: index.recall(tenant, "hubspot", "+971500000001"),
        "index remember": lambda: index.remember(tenant, "hubspot", "customer", "+971509999999", "0"),
    }
    async with drivers.open(tenant, actor) as driver:
        steps["field mapping (copy)"] = lambda: load_field_map(drivers._sessions, tenant, driver)
        parts = []
        for name, step in steps.items():
            parts.append(f"{name} {pct([(await timed(step))[1] for _ in range(n)], 0.5):.1f}")
    print(f"  where it goes (p50 ms, one at a time): {'; '.join(parts)}")


async def main(lookups: int, search_ms: float, get_ms: float, stall_ms: float, database: str, via_httpx: bool
               ) -> None:
    upgrade_to_head(database)
    redis_url = os.environ.get("CRM_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
    settings = Settings(database_url=database, redis_url=redis_url, env="bench",
                        credential_encryption_key="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                        rate_limits=RateLimitSettings(per_tenant_tool="1000000/minute"),  # its cost, not refusals
                        lookup=LookupSettings(deadline_ms=800))
    pooled = {"pool_size": 24} if make_url(database).get_backend_name() == "postgresql" else {}
    engine = create_engine(database, **pooled)
    sessions = session_factory(engine)
    app = hubspot_sandbox.create_app()
    state: hubspot_sandbox.HubSpotState = app.state.sandbox
    latency = ProviderLatency(httpx.ASGITransport(app=app), search_ms / 1000, get_ms / 1000)
    tenant = await create_tenant(sessions, settings={"portal_id": state.portal_id, "default_region": "AE"})
    vault = CredentialVault.from_settings(settings, sessions)
    creds = state.tokens.credentials()
    await vault.store(tenant, "hubspot", {"auth": "oauth2", "access_token": creds.access_token,
                                          "refresh_token": creds.refresh_token},
                      actor=Actor(type="system", id="bench", purpose="bench"),
                      expires_at=datetime.now(UTC) + timedelta(hours=1))
    budget = ProviderBudget.from_url(redis_url, tool_wait=settings.provider_budget.tool_wait_seconds)
    index = PhoneIndex(sessions, settings.subject_hash_key.get_secret_value())
    drivers = VaultDriverProvider(sessions, vault, transport=latency, budget=budget, phone_index=index)
    ctx = AppContext(settings=settings, engine=engine, sessions=sessions, temporal=TemporalGateway(settings.temporal),
                     extras={"drivers": drivers, "phone_index": index})
    token = mint_token(settings, subject="bench", role="agent", tenant_id=tenant)
    total = lookups + 20 + 20 + 40  # warm-up, stalled, concurrent
    ids = [state.add("contacts", {"firstname": "Caller", "lastname": str(n), "phone": national(n)[0]}).id
           for n in range(total)]
    # Latency rows measure latency: limits far above the rate (the budget's Redis round trip still runs).
    HubSpotDriver.rate_limits = (RateLimit(10**6, 10.0), RateLimit(10**6, 1.0, scope="search"))
    state.search_limit.per_second = None
    # The sandbox's rate-limit headers count every call (as HubSpot's do) and the driver pauses the tenant's
    # budget when they say the window is spent: the latency rows make hundreds of calls in 10 s, so a wide window.
    state.knobs.interval_limit = 10**6
    app_under_test = create_app(context=ctx)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app_under_test), base_url="http://bench",
                                 headers={"authorization": f"Bearer {token}"}) as via_transport, \
            httpx.AsyncClient(base_url=HubSpotDriver.base_url, transport=latency,
                              auth=BearerAuth(creds.access_token)) as bare_client:
        bare = HubSpotDriver(bare_client, {"default_region": "AE"})

        api = via_transport if via_httpx else AsgiClient(app_under_test, token)

        async def lookup(phone: str) -> dict[str, Any]:
            response = await api.post(LOOKUP, json={"phone": phone})
            body: dict[str, Any] = response.json()
            return body

        for n in range(total - 20, total):  # warm-up: imports, pools, scripts (numbers not used again)
            await lookup(national(n)[1])
        cpu = time.process_time()
        bare_search = [(await timed(lambda n=n: bare.lookup_customer(phone=national(n)[1])))[1] for n in range(50)]
        cpu_search, cpu = (time.process_time() - cpu) * 1000 / 50, time.process_time()
        bare_get = [(await timed(lambda n=n: bare.lookup_customer(external_id=ids[n])))[1] for n in range(50)]
        cpu_get = (time.process_time() - cpu) * 1000 / 50
        cold: list[tuple[float, float]] = []
        warm: list[tuple[float, float]] = []
        misses = 0
        cpu = time.process_time()
        for n in range(lookups):
            body, elapsed, provider = await timed(lambda n=n: lookup(national(n)[1]))
            misses += not body.get("found")
            cold.append((elapsed, provider))
            await settle_late_lookups(ctx)  # the index write that follows the answer, before the next caller
        cpu_cold, cpu = (time.process_time() - cpu) * 1000 / lookups, time.process_time()
        for n in range(lookups):
            body, elapsed, provider = await timed(lambda n=n: lookup(national(n)[1]))
            misses += not body.get("found")
            warm.append((elapsed, provider))
        cpu_warm = (time.process_time() - cpu) * 1000 / lookups
        print(f"crm_lookup_customer: {lookups} callers, cold then warm, one at a time; injected provider latency "
              f"{search_ms:g} ms search / {get_ms:g} ms get; database {make_url(database).get_backend_name()}; "
              f"deadline {settings.lookup.deadline_ms} ms; requests "
              f"{'via httpx ASGITransport' if via_httpx else 'as ASGI calls'}")
        print(summary("bare driver: search (HubSpot OR-ed filters)", bare_search))
        print(summary("bare driver: get by id", bare_get))
        print(summary("route, cold (index miss + search)", [e for e, _ in cold]))
        print(summary("route, warm (index hit + get)", [e for e, _ in warm]))
        print(summary("overhead over the provider calls, cold", [e - p for e, p in cold]))
        print(summary("overhead over the provider calls, warm", [e - p for e, p in warm]))
        print(f"  not found (should be 0): {misses}")
        print(f"  CPU of this process per lookup (sandbox included): bare search {cpu_search:.1f} ms, route cold "
              f"{cpu_cold:.1f} ms (+{cpu_cold - cpu_search:.1f}); bare get {cpu_get:.1f} ms, route warm {cpu_warm:.1f} "
              f"ms (+{cpu_warm - cpu_get:.1f}); the route's own CPU is the difference, whatever the machine's load")
        await stages(drivers, vault, index, tenant)

        latency.stall = stall_ms / 1000
        stalled: list[float] = []
        reasons: Counter[str] = Counter()
        for n in range(lookups, lookups + 20):
            body, elapsed, _ = await timed(lambda n=n: lookup(national(n)[1]))
            stalled.append(elapsed)
            reasons[str(body.get("reason") or ("found" if body.get("found") else body))] += 1
        print(summary(f"stalled provider ({stall_ms:g} ms): answer time", stalled,
                      f"; over deadline+50 ms: {sum(e > settings.lookup.deadline_ms + 50 for e in stalled)}"
                      f"; answers {dict(reasons)}"))
        await settle_late_lookups(ctx)
        latency.stall = None
        hits_before = state.calls["POST /crm/v3/objects/{object_type}/search"]
        body = await lookup(national(lookups)[1])
        searched = state.calls["POST /crm/v3/objects/{object_type}/search"] - hits_before
        print(f"  after the late answers: a stalled caller calling again is found={body.get('found')} "
              f"with {searched} search(es)")

        HubSpotDriver.rate_limits = HUBSPOT_LIMITS  # the real limits: 4 searches/s, 100 calls/10 s
        state.search_limit.per_second = 4
        state.knobs.interval_limit = None
        crowd = list(range(lookups + 20, lookups + 40))
        for label in ("20 concurrent new callers", "the same 20 calling again"):
            await asyncio.sleep(10.5)  # fresh windows: the rows before spent HubSpot's 100 calls / 10 s
            taken = Counter(budget.counters)
            started = time.perf_counter()
            results = await asyncio.gather(*(timed(lambda n=n: lookup(national(n)[1])) for n in crowd))
            wall = (time.perf_counter() - started) * 1000
            outcome = Counter("found" if b.get("found") else str(b.get("reason")) for b, _, _ in results)
            print(summary(label, [e for _, e, _ in results], f"; {dict(outcome)}; all answered in {wall:.0f} ms"))
            late_started = time.perf_counter()
            await settle_late_lookups(ctx)
            waits = Counter(budget.counters)
            waits.subtract(taken)
            print(f"    late answers all in {(time.perf_counter() - late_started) * 1000:.0f} ms later; budget: "
                  f"{waits['taken']} calls taken, {waits['refused']} times a tool waited for a slot")
        print(f"  sandbox 429s: {state.calls.get('429', 0)}; budget counters {budget.counters}")
    await drivers.aclose()
    await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--search-ms", type=float, default=150.0)
    parser.add_argument("--get-ms", type=float, default=60.0)
    parser.add_argument("--stall-ms", type=float, default=3000.0)
    parser.add_argument("--httpx", action="store_true", help="send through httpx's ASGITransport instead "
                        "of direct ASGI calls (its client-side work then counts as the route's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, database_url(Path(scratch)) as url:
        logging.getLogger("api.ratelimit").setLevel(logging.CRITICAL)
        asyncio.run(main(args.lookups, args.search_ms, args.get_ms, args.stall_ms, url, args.httpx))
