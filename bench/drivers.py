"""Per-verb driver overhead against bare httpx calls to the same sandbox, in the same run.

For each driver and verb, one warm-up call records the exact HTTP requests the driver sends; the bench
then times the verb through the driver and times a bare `httpx.AsyncClient` replaying those recorded
requests (static bearer header, no driver, no auth flow, no parsing). The ratio is driver / bare; the
overhead column is the extra time per HTTP call. Best of 5 alternating rounds, so scheduler noise only inflates and
hits both sides alike.

    .venv/bin/python bench/drivers.py [--iterations 200] [--mode asgi|loopback|both]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers.auth import OAuth2Auth, OAuthTokenSource  # noqa: E402
from drivers.base import BaseDriver, CrmObject  # noqa: E402
from drivers.registry import DRIVERS, get_driver_class  # noqa: E402
from sandboxes.serve import create_sandbox, serve_in_task  # noqa: E402

TOKEN_PATHS = {"hubspot": "/oauth/v1/token", "salesforce": "/services/oauth2/token"}
DEAL = {
    "hubspot": lambda n: {"dealname": f"Bench deal {n}", "amount": "100"},
    "salesforce": lambda n: {"Name": f"Bench deal {n}", "StageName": "Prospecting", "CloseDate": "2026-12-31"},
}
CUSTOMER = {
    "hubspot": {"firstname": "Ann", "lastname": "Bench", "phone": "(415) 555-0100", "email": "ann@example.com"},
    "salesforce": {"FirstName": "Ann", "LastName": "Bench", "Phone": "(415) 555-0100", "Email": "ann@example.com"},
}
UPDATE = {"hubspot": {"description": "updated"}, "salesforce": {"Description": "updated"}}
Recorded = tuple[str, str, dict[str, str], bytes, int]
KEY = re.compile("bench-key-[0-9]{6}")


class Recorder(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner, self.log = inner, list[Recorded]()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("authorization", "content-length")}
        body = await request.aread()
        response = await self.inner.handle_async_request(request)
        self.log.append((request.method, str(request.url), headers, body, response.status_code))
        return response


def verbs(slug: str, driver: BaseDriver, ids: dict[str, str]) -> dict[str, Callable[[], Awaitable[Any]]]:
    keys = count()
    since = datetime.now(UTC) - timedelta(hours=1)
    return {
        "lookup_customer(phone)": lambda: driver.lookup_customer(phone="+1 415 555 0100"),
        "lookup_customer(email)": lambda: driver.lookup_customer(email="ann@example.com"),
        "get_record": lambda: driver.get_record(CrmObject.DEAL, ids["deal"]),
        "search_records": lambda: driver.search_records(CrmObject.DEAL, "bench", 10),
        "update_record": lambda: driver.update_record(CrmObject.DEAL, ids["deal"], UPDATE[slug]),
        "list_recent(20)": lambda: driver.list_recent(CrmObject.DEAL, since, 20),
        "describe_schema": lambda: driver.describe_schema(CrmObject.DEAL),
        "append_note": lambda: driver.append_note(ids["customer"], ids["note"], "line", batch_key=f"b{next(keys)}"),
        # Last: every create adds a record, which would slow the searches above as the run goes on.
        "create_record": lambda: driver.create_record(CrmObject.DEAL, DEAL[slug](0), f"bench-key-{next(keys):06d}"),
    }


async def best_per_call(
    first: Callable[[], Awaitable[Any]], second: Callable[[], Awaitable[Any]], iterations: int, rounds: int = 5
) -> tuple[float, float]:
    """Best seconds per call of each, alternating rounds so machine drift hits both sides alike."""
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for side, run in enumerate((first, second)):
            start = time.perf_counter()
            for _ in range(iterations):
                await run()
            best[side] = min(best[side], (time.perf_counter() - start) / iterations)
    return best[0], best[1]


@asynccontextmanager
async def wired(slug: str, mode: str) -> AsyncIterator[tuple[httpx.AsyncBaseTransport, str, Any]]:
    app = create_sandbox(slug)
    state = app.state.sandbox
    state.knobs.interval_limit = None
    if hasattr(state, "api_usage_limit"):
        state.api_usage_limit = 10**9
    if mode == "asgi":
        yield httpx.ASGITransport(app=app), "https://api.hubapi.com" if slug == "hubspot" else state.instance_url, state
    else:
        async with serve_in_task(app) as base_url:
            yield httpx.AsyncHTTPTransport(), base_url, state


async def bench_driver(slug: str, mode: str, iterations: int) -> list[tuple[str, int, float, float]]:
    rows = []
    async with wired(slug, mode) as (inner, base_url, state):
        creds = state.tokens.credentials()
        recorder = Recorder(inner)
        source = OAuthTokenSource(
            token_url=f"{base_url}{TOKEN_PATHS[slug]}",
            client_id=creds.client_id,
            client_secret=creds.client_secret,
            refresh_token=creds.refresh_token,
            access_token=creds.access_token,
        )
        config = {"instance_url": base_url, "base_url": base_url}
        cls = get_driver_class(slug)
        async with (
            httpx.AsyncClient(base_url=cls.api_base_url(config), transport=recorder, auth=OAuth2Auth(source)) as client,
            httpx.AsyncClient(transport=inner, headers={"Authorization": f"Bearer {creds.access_token}"}) as bare,
        ):
            driver = cls(client, config)
            customer = (await driver.create_record(CrmObject.CUSTOMER, CUSTOMER[slug], "bench-customer")).external_id
            for n in range(50):
                await driver.create_record(CrmObject.DEAL, DEAL[slug](n), f"bench-seed-{n}")
            ids = {
                "customer": customer,
                "deal": (await driver.create_record(CrmObject.DEAL, DEAL[slug](99), "bench-deal")).external_id,
                "note": (await driver.append_note(customer, None, "start", batch_key="b-start")).external_id,
            }
            replays = count(500_000)
            for verb, run in verbs(slug, driver, ids).items():
                recorder.log.clear()
                await run()
                recorded = list(recorder.log)

                async def replay(recorded: list[Recorded] = recorded, verb: str = verb) -> None:
                    # A replayed create needs a fresh idempotency key, as the driver's loop uses.
                    fresh = f"bench-key-{next(replays):06d}"
                    for method, url, headers, body, status in recorded:
                        url, body = KEY.sub(fresh, url), KEY.sub(fresh, body.decode()).encode()
                        response = await bare.request(method, url, headers=headers, content=body)
                        assert response.status_code == status, (verb, method, response.status_code)

                driver_s, bare_s = await best_per_call(run, replay, iterations)
                rows.append((verb, len(recorded), bare_s, driver_s))
    return rows


def report(slug: str, mode: str, rows: list[tuple[str, int, float, float]]) -> None:
    print(f"\n{slug} ({mode}): µs per verb, best of 5 alternating rounds")
    print(f"{'verb':<24}{'calls':>6}{'bare':>10}{'driver':>10}{'ratio':>8}{'overhead/call':>15}")
    for verb, calls, bare_s, driver_s in rows:
        overhead = (driver_s - bare_s) / max(calls, 1) * 1e6
        timings = f"{bare_s * 1e6:>10.0f}{driver_s * 1e6:>10.0f}{driver_s / bare_s:>8.2f}"
        print(f"{verb:<24}{calls:>6}{timings}{overhead:>15.0f}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--mode", choices=["asgi", "loopback", "both"], default="both")
    args = parser.parse_args()
    modes = ["asgi", "loopback"] if args.mode == "both" else [args.mode]
    print(f"python {sys.version.split()[0]}, httpx {httpx.__version__}, iterations {args.iterations}")
    for mode in modes:
        for slug in sorted(DRIVERS):
            if slug in TOKEN_PATHS:  # the OAuth drivers; issue 13's are benched by bench/drivers_13.py
                report(slug, mode, await bench_driver(slug, mode, args.iterations))
    # --- issue 13 ---
    from bench import drivers_13

    await drivers_13.main(["--iterations", str(args.iterations), "--mode", args.mode])


if __name__ == "__main__":
    asyncio.run(main())
