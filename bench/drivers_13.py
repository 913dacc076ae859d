"""Issue 13's drivers in the driver-vs-bare bench (Odoo, generic REST as two API shapes, custom webhook), and
the SSRF transport's own cost per request.

Same method as bench/drivers.py (whose helpers it uses): a warm-up call records the driver's HTTP requests, a
bare httpx client replays them (Odoo's key travels in the recorded body, the webhook's signature headers and
the flat API's key header are recorded too), best of 5 alternating rounds. The transport figure times GETs to a
loopback sandbox through `SafeTransport` (resolve, check, pin, capped stream) against a plain transport.

    .venv/bin/python bench/drivers_13.py [--iterations 200] [--mode asgi|loopback|both]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from itertools import count
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.drivers import KEY, Recorded, Recorder, best_per_call, report, verbs  # noqa: E402
from drivers.auth import GrantTokenSource, TokenSet  # noqa: E402
from drivers.base import CrmObject  # noqa: E402
from drivers.custom_webhook import StandardWebhookAuth  # noqa: E402
from drivers.generic_rest_config import GenericRestForm  # noqa: E402
from drivers.registry import get_driver_class  # noqa: E402
from drivers.transport import OutboundGuard, SafeTransport  # noqa: E402
from sandboxes import generic_rest, webhook_receiver  # noqa: E402
from sandboxes.odoo import app as odoo_app  # noqa: E402
from sandboxes.serve import serve_in_task  # noqa: E402
from tests.unit.drivers.generic_rest_configs import flat_config, jsonapi_config  # noqa: E402

SIGNED = ("webhook-signature", "webhook-timestamp")  # re-signed by the bare client for each replay
PLAIN_DEAL: Callable[[int], dict[str, Any]] = lambda n: {"name": f"Bench deal {n}", "amount": "100"}  # noqa: E731
PLAIN_CUSTOMER = {"first_name": "Ann", "last_name": "Bench", "phone": "(415) 555-0100", "email": "ann@example.com"}
CASES: dict[str, dict[str, Any]] = {
    "odoo": {"deal": lambda n: {"name": f"Bench deal {n}", "expected_revenue": 100.0},
             "customer": {"name": "Ann Bench", "phone": "(415) 555-0100", "email": "ann@example.com"},
             "update": {"partner_name": "updated"}},
    "generic_rest:flat": {"deal": PLAIN_DEAL, "customer": PLAIN_CUSTOMER, "update": {"description": "updated"}},
    "generic_rest:jsonapi": {"deal": PLAIN_DEAL, "customer": PLAIN_CUSTOMER, "update": {"description": "updated"}},
    "custom_webhook": {"deal": PLAIN_DEAL, "customer": PLAIN_CUSTOMER, "update": {"description": "updated"}},
}


def make_app(case: str) -> Any:
    if case == "odoo":
        return odoo_app.create_app()
    return webhook_receiver.create_app() if case == "custom_webhook" else generic_rest.create_app()


def wire(case: str, app: Any, base: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(credential blob, driver config) for `app` answering at `base`."""
    state = app.state.sandbox
    if case == "odoo":
        secret = {"auth": "odoo", "login": state.login, "api_key": state.tokens.credentials().access_token}
        return secret, {"instance_url": base, "database": state.database}
    if case == "custom_webhook":
        return ({"auth": "webhook", "signing_secrets": list(state.secrets.held)},
                {"endpoint_url": f"{base}{webhook_receiver.PATH}"})
    shape = case.partition(":")[2]
    body = (flat_config if shape == "flat" else jsonapi_config)(state)
    prefix = generic_rest.PREFIX[shape]
    body |= {"base_url": f"{base}{prefix}", "openapi_url": f"{base}{prefix}/openapi.json"}
    if shape == "jsonapi":
        body["auth"] = body["auth"] | {"token_url": f"{base}{prefix}/oauth/token"}
    form = GenericRestForm.model_validate(body)
    return form.secret(), form.settings()


@asynccontextmanager
async def served(app: Any, mode: str) -> AsyncIterator[tuple[httpx.AsyncBaseTransport, str]]:
    if mode == "asgi":
        yield httpx.ASGITransport(app=app), "https://crm.bench.example"
    else:
        async with serve_in_task(app) as base_url:
            yield httpx.AsyncHTTPTransport(), base_url


async def bench_case(case: str, mode: str, iterations: int) -> list[tuple[str, int, float, float]]:
    rows = []
    slug = case.partition(":")[0]
    app = make_app(case)
    async with served(app, mode) as (inner, base):
        secret, config = wire(case, app, base)
        cls = get_driver_class(slug)
        recorder = Recorder(inner)
        async with httpx.AsyncClient(transport=inner) as token_http:
            async def grant() -> TokenSet:
                return await cls.grant_token(token_http, secret, config, None)

            source = GrantTokenSource(grant)
            auth = cls.build_auth(secret, config, lambda: source)
            async with (httpx.AsyncClient(base_url=cls.api_base_url(config), transport=recorder, auth=auth) as client,
                        httpx.AsyncClient(transport=inner) as bare):
                driver = cls(client, config)
                assert (await driver.test_connection()).ok
                if source.refresh_count:  # a client-credentials token: the bare client sends the same one
                    bare.headers["Authorization"] = f"Bearer {await source.current()}"
                if slug == "custom_webhook":  # signing is the protocol's auth: the bare client signs too
                    bare.auth = StandardWebhookAuth(list(secret["signing_secrets"]))
                data = CASES[case]
                customer = (await driver.create_record(CrmObject.CUSTOMER, data["customer"], "bench-c")).external_id
                for n in range(50):
                    await driver.create_record(CrmObject.DEAL, data["deal"](n), f"bench-seed-{n}")
                ids = {"customer": customer,
                       "deal": (await driver.create_record(CrmObject.DEAL, data["deal"](99), "bench-d")).external_id,
                       "note": (await driver.append_note(customer, None, "start", batch_key="b-start")).external_id}
                replays = count(500_000)
                table = verbs("hubspot", driver, ids)  # the verb list; the payloads are this case's
                table["update_record"] = lambda: driver.update_record(CrmObject.DEAL, ids["deal"], data["update"])
                keys = count()
                table["create_record"] = lambda: driver.create_record(CrmObject.DEAL, data["deal"](0),
                                                                      f"bench-key-{next(keys):06d}")
                for verb, run in table.items():
                    recorder.log.clear()
                    await run()
                    recorded: list[Recorded] = list(recorder.log)

                    async def replay(recorded: list[Recorded] = recorded, verb: str = verb) -> None:
                        fresh = f"bench-key-{next(replays):06d}"
                        for method, url, headers, body, _status in recorded:
                            url, body = KEY.sub(fresh, url), KEY.sub(fresh, body.decode()).encode()
                            headers = {k: v for k, v in headers.items() if k not in SIGNED}
                            response = await bare.request(method, url, headers=headers, content=body)
                            assert response.status_code < 400, (verb, method, response.status_code)

                    driver_s, bare_s = await best_per_call(run, replay, iterations)
                    rows.append((verb, len(recorded), bare_s, driver_s))
    return rows


async def transport_overhead(iterations: int) -> None:
    """µs per GET through SafeTransport vs a plain transport: first its own cost (an in-process answer, no
    network: resolve + check + pin + capped body), then to a loopback sandbox (literal IP and a name)."""
    guard = OutboundGuard(allow_loopback=True)
    answer = httpx.MockTransport(lambda request: httpx.Response(200, json={"ok": True}))
    for label, url in (("127.0.0.1 (literal)", "http://127.0.0.1/x"), ("localhost (resolved)", "http://localhost/x")):
        async with httpx.AsyncClient(transport=answer) as plain, \
                httpx.AsyncClient(transport=SafeTransport(guard, answer)) as safe:
            safe_s, plain_s = await best_per_call(lambda u=url: safe.get(u), lambda u=url: plain.get(u), iterations)
        print(f"SafeTransport own cost, {label:<22} plain {plain_s * 1e6:>6.0f} µs  safe {safe_s * 1e6:>6.0f} µs  "
              f"overhead {(safe_s - plain_s) * 1e6:>5.0f} µs/request")
    async with serve_in_task(odoo_app.create_app()) as base:
        port = base.rsplit(":", 1)[1]
        for label, url in (("127.0.0.1 (literal)", f"http://127.0.0.1:{port}/web/version"),
                           ("localhost (resolved)", f"http://localhost:{port}/web/version")):
            async with httpx.AsyncClient() as plain, httpx.AsyncClient(transport=SafeTransport(guard)) as safe:
                safe_s, plain_s = await best_per_call(lambda u=url: safe.get(u), lambda u=url: plain.get(u), iterations)
            print(f"SafeTransport {label:<22} plain {plain_s * 1e6:>7.0f} µs  safe {safe_s * 1e6:>7.0f} µs  "
                  f"overhead {(safe_s - plain_s) * 1e6:>6.0f} µs/request")


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--mode", choices=["asgi", "loopback", "both"], default="both")
    parser.add_argument("--transport-only", action="store_true")
    args = parser.parse_args(argv)
    if args.transport_only:
        await transport_overhead(args.iterations)
        return
    modes = ["asgi", "loopback"] if args.mode == "both" else [args.mode]
    for mode in modes:
        for case in CASES:
            report(case, mode, await bench_case(case, mode, args.iterations))
    print()
    await transport_overhead(args.iterations)


if __name__ == "__main__":
    asyncio.run(main())
