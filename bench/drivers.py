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
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers.auth import GrantTokenSource, TokenSet  # noqa: E402
from drivers.base import BaseDriver, CrmObject  # noqa: E402
from drivers.mindbody import client_rssid  # noqa: E402
from drivers.registry import DRIVERS, get_driver_class  # noqa: E402
from sandboxes.serve import create_sandbox, serve_in_task  # noqa: E402
from tests.support.sandbox_provider import DEFAULT_SETTINGS, TOKEN_PATHS, credential_blob  # noqa: E402

DEAL: dict[str, Callable[[Any], dict[str, Any]]] = {
    "hubspot": lambda n: {"dealname": f"Bench deal {n}", "amount": "100"},
    "salesforce": lambda n: {"Name": f"Bench deal {n}", "StageName": "Prospecting", "CloseDate": "2026-12-31"},
    "zoho": lambda n: {"Deal_Name": f"Bench deal {n}", "Stage": "Qualification", "Amount": 100},
    # providers without deals bench their customer (patient, client, guest) object instead
    "athenahealth": lambda n: {"firstname": f"Bench{n}", "lastname": "Patient", "dob": "01/15/1985",
                               "departmentid": "1", "email": f"bench{n}@example.com"},
    "mindbody": lambda n: {"FirstName": f"Bench{n}", "LastName": "Client", "Email": f"bench{n}@example.com"},
    "tekmetric": lambda n: {"firstName": f"Bench{n}", "lastName": "Customer", "email": f"bench{n}@example.com"},
    "toast": lambda n: {"firstName": f"Bench{n}", "lastName": "Guest", "email": f"bench{n}@example.com"},
}
PROBE = {"athenahealth": CrmObject.CUSTOMER, "mindbody": CrmObject.CUSTOMER, "tekmetric": CrmObject.CUSTOMER,
         "toast": CrmObject.CUSTOMER}
CUSTOMER = {
    "zoho": {"First_Name": "Ann", "Last_Name": "Bench", "Phone": "(415) 555-0100", "Email": "ann@example.com"},
    "athenahealth": {"firstname": "Ann", "lastname": "Bench", "mobilephone": "(415) 555-0100", "dob": "02/02/1990",
                     "email": "ann@example.com", "departmentid": "1"},
    "hubspot": {"firstname": "Ann", "lastname": "Bench", "phone": "(415) 555-0100", "email": "ann@example.com"},
    "salesforce": {"FirstName": "Ann", "LastName": "Bench", "Phone": "(415) 555-0100", "Email": "ann@example.com"},
    "mindbody": {"FirstName": "Ann", "LastName": "Bench", "MobilePhone": "(415) 555-0100", "Email": "ann@example.com"},
    "tekmetric": {"firstName": "Ann", "lastName": "Bench", "phone": "(415) 555-0100", "email": "ann@example.com"},
    "toast": {"firstName": "Ann", "lastName": "Bench", "phone": "(415) 555-0100", "email": "ann@example.com"},
}
UPDATE = {"hubspot": {"description": "updated"}, "salesforce": {"Description": "updated"},
          "zoho": {"Description": "updated"}, "athenahealth": {"city": "Boston"},
          "mindbody": {"City": "updated"}, "tekmetric": {"lastName": "updated"}}
# Where a driver sends a value derived from the idempotency key rather than the key itself (issue 12).
DERIVED_KEY: dict[str, Callable[[str], str]] = {
    "mindbody": client_rssid,
    "toast": lambda key: str(uuid.uuid5(uuid.UUID("5d1f0c1e-2b7a-4f7e-9a43-3c1a0e6b8d21"),
                                        f"{DEFAULT_SETTINGS['toast']['restaurant_guid']}:{key}")),
}
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


RECORDED_KEY = [""]  # the key of the create the bench recorded (a derived form of it is in the requests)


def _remember(key: str) -> str:
    RECORDED_KEY[0] = key
    return key


def _create(driver: BaseDriver, slug: str, probe: CrmObject, key: str) -> Awaitable[Any]:
    # Customers are unique by name and email at Mindbody and by email at Toast: each create names a new
    # person after its key, so the bench times a real create and the replay's fresh key a new person too.
    fields = DEAL[slug](key if slug in PROBE else 0)
    return driver.create_record(probe, fields, key)


def verbs(slug: str, driver: BaseDriver, ids: dict[str, str]) -> dict[str, Callable[[], Awaitable[Any]]]:
    keys = count()
    since = datetime.now(UTC) - timedelta(hours=1)
    probe = PROBE.get(slug, CrmObject.DEAL)
    table: dict[str, Callable[[], Awaitable[Any]]] = {
        "lookup_customer(phone)": lambda: driver.lookup_customer(phone="+1 415 555 0100"),
        "lookup_customer(email)": lambda: driver.lookup_customer(email="ann@example.com"),
        "get_record": lambda: driver.get_record(probe, ids["deal"]),
        "search_records": lambda: driver.search_records(probe, "bench", 10),
        "update_record": lambda: driver.update_record(probe, ids["deal"], UPDATE[slug]),
        "list_recent(20)": lambda: driver.list_recent(probe, since, 20),
        "describe_schema": lambda: driver.describe_schema(probe),
        "append_note": lambda: driver.append_note(ids["customer"], ids["note"], "line", batch_key=f"b{next(keys)}"),
        # Last: every create adds a record, which would slow the searches above as the run goes on.
        "create_record": lambda: _create(driver, slug, probe, _remember(f"bench-key-{next(keys):06d}")),
    }
    if slug not in UPDATE:  # Toast: no guest update
        del table["update_record"]
    if CrmObject.NOTE not in driver.supported_objects:  # Toast: no notes
        del table["append_note"]
    return table


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


BASE_URLS = {"hubspot": "https://api.hubapi.com", "zoho": "https://www.zohoapis.com",
             "athenahealth": "https://api.preview.platform.athenahealth.com",
             "mindbody": "https://api.mindbodyonline.com/public/v6",
             "tekmetric": "https://sandbox.tekmetric.com", "toast": "https://ws-sandbox-api.eng.toasttab.com"}


@asynccontextmanager
async def wired(slug: str, mode: str) -> AsyncIterator[tuple[httpx.AsyncBaseTransport, str, Any]]:
    app = create_sandbox(slug)
    state = app.state.sandbox
    state.knobs.interval_limit = None
    if hasattr(state, "api_usage_limit"):
        state.api_usage_limit = 10**9
    if mode == "asgi":
        yield httpx.ASGITransport(app=app), BASE_URLS.get(slug) or state.instance_url, state
    else:
        async with serve_in_task(app) as base_url:
            yield httpx.AsyncHTTPTransport(), base_url + ("/public/v6" if slug == "mindbody" else ""), state


async def bench_driver(slug: str, mode: str, iterations: int) -> list[tuple[str, int, float, float]]:
    rows = []
    async with wired(slug, mode) as (inner, base_url, state):
        creds = state.tokens.credentials()
        recorder = Recorder(inner)
        cls = get_driver_class(slug)
        host = base_url.removesuffix("/public/v6")
        config = DEFAULT_SETTINGS.get(slug, {}) | {"instance_url": base_url, "base_url": base_url,
                                                   "token_url": f"{host}{TOKEN_PATHS[slug]}",
                                                   "practice_id": getattr(state, "practice_id", None)}
        blob = credential_blob(slug, {"client_id": creds.client_id, "client_secret": creds.client_secret,
                                      "refresh_token": creds.refresh_token, "access_token": creds.access_token})
        async with (
            httpx.AsyncClient(transport=inner) as token_http,
            httpx.AsyncClient(base_url=cls.api_base_url(config), transport=recorder) as client,
            httpx.AsyncClient(transport=inner,
                              headers={"Authorization": f"{cls.auth_scheme} {creds.access_token}"}) as bare,
        ):
            async def grant() -> TokenSet:
                return await cls.grant_token(token_http, blob, config, (creds.client_id, creds.client_secret))

            # The driver's auth as production builds it (static site/restaurant headers included).
            source = GrantTokenSource(grant, access_token=creds.access_token)
            client.auth = cls.build_auth(blob, config, lambda: source)
            driver = cls(client, config)
            probe = PROBE.get(slug, CrmObject.DEAL)
            customer = (await driver.create_record(CrmObject.CUSTOMER, CUSTOMER[slug], "bench-customer")).external_id
            for n in range(50):
                await driver.create_record(probe, DEAL[slug](n), f"bench-seed-{n}")
            notes = CrmObject.NOTE in driver.supported_objects
            ids = {
                "customer": customer,
                "deal": (await driver.create_record(probe, DEAL[slug](99), "bench-deal")).external_id,
                "note": (await driver.append_note(customer, None, "start", batch_key="b-start")).external_id
                if notes else "",
            }
            replays = count(500_000)
            for verb, run in verbs(slug, driver, ids).items():
                recorder.log.clear()
                await run()
                recorded = list(recorder.log)
                if not recorded:  # answered without HTTP (a static schema): nothing to compare against
                    continue

                async def replay(recorded: list[Recorded] = recorded, verb: str = verb,
                                 warm_key: str = RECORDED_KEY[0]) -> None:
                    # A replayed create needs a fresh idempotency key, as the driver's loop uses.
                    fresh = f"bench-key-{next(replays):06d}"
                    derive = DERIVED_KEY.get(slug)
                    for method, url, headers, body, status in recorded:
                        text = body.decode()
                        if derive is not None:  # the key travels as a value derived from it
                            for old in set(KEY.findall(url + text)) | {warm_key}:
                                url, text = url.replace(derive(old), derive(fresh)), text.replace(derive(old),
                                                                                                  derive(fresh))
                        url, text = KEY.sub(fresh, url), KEY.sub(fresh, text)
                        response = await bare.request(method, url, headers=headers, content=text.encode())
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
