"""Provider budget under 3x offered load: provider 429s and the share of the provider's limit put to use.

Mirror callers (priority `mirror`) offer `--factor` times HubSpot's burst limit (100 requests / 10 s) to the
HubSpot sandbox, whose rolling window enforces that limit, through the budget (`drivers.budget.attach`) on a
real Redis; a refused call waits its `retry_after` (as Temporal's retry timer would) before offering again.

    .venv/bin/python bench/budget.py [--seconds 60] [--factor 3]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers.base import CrmObject  # noqa: E402
from drivers.budget import ProviderBudget, attach  # noqa: E402
from drivers.errors import DriverError, RateLimitedError  # noqa: E402
from drivers.hubspot import HubSpotDriver  # noqa: E402
from sandboxes import hubspot as hubspot_sandbox  # noqa: E402


async def run(seconds: float, factor: float, redis_url: str) -> None:
    app = hubspot_sandbox.create_app()
    state: hubspot_sandbox.HubSpotState = app.state.sandbox
    limit = next(lim for lim in HubSpotDriver.rate_limits if lim.scope == "all")
    state.knobs.interval_limit, state.knobs.interval_seconds = limit.requests, limit.per_seconds
    budget, tenant = ProviderBudget.from_url(redis_url), uuid.uuid4()
    token = state.tokens.credentials().access_token
    client = httpx.AsyncClient(base_url="https://api.hubapi.com", transport=httpx.ASGITransport(app=app),
                               headers={"Authorization": f"Bearer {token}"})
    attach(client, budget, tenant, HubSpotDriver, "mirror")
    driver = HubSpotDriver(client)
    offered_rate = factor * limit.requests / limit.per_seconds
    callers, keys = 20, itertools.count()
    counts = {"ok": 0, "budget": 0, "provider_429": 0, "other": 0}
    start = time.monotonic()

    async def caller() -> None:
        while time.monotonic() - start < seconds:
            began = time.monotonic()
            try:
                await driver.update_record(CrmObject.DEAL, deal, {"description": f"v{next(keys)}"})
                counts["ok"] += 1
            except RateLimitedError as exc:
                counts["budget" if exc.provider_code == "BUDGET" else "provider_429"] += 1
                await asyncio.sleep(exc.retry_after.total_seconds() if exc.retry_after else 1.0)
                continue
            except DriverError:
                counts["other"] += 1
            await asyncio.sleep(max(0.0, callers / offered_rate - (time.monotonic() - began)))

    deal = state.add("deals", {"dealname": "bench"}).id
    await asyncio.gather(*(caller() for _ in range(callers)))
    elapsed = time.monotonic() - start
    await client.aclose()
    await budget.aclose()
    allowed = limit.requests / limit.per_seconds
    used = counts["ok"] / elapsed
    mirror_share = allowed * (1 - budget.tool_reserve)
    print(f"provider budget: HubSpot sandbox limited to {limit.requests}/{limit.per_seconds:g} s, offered "
          f"{offered_rate:.0f} req/s ({factor:g}x) by {callers} mirror callers for {elapsed:.0f} s")
    print(f"  provider 429s {counts['provider_429']}, other errors {counts['other']}, refused by the budget "
          f"{counts['budget']} (each waited its retry_after)")
    print(f"  calls that reached the provider {used:.2f}/s = {used / allowed:.1%} of the provider's limit, "
          f"{used / mirror_share:.1%} of the mirror's share ({1 - budget.tool_reserve:.0%}; the rest is the tools' "
          "reserve)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--factor", type=float, default=3)
    args = parser.parse_args()
    asyncio.run(run(args.seconds, args.factor, os.environ.get("CRM_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")))


if __name__ == "__main__":
    main()
