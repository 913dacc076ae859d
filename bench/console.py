"""How fast the console's pages answer: server time per page (median and p95) over a tenant with a backlog.

The real app in-process (httpx ASGI transport), a signed-in session, and a tenant holding `--rows` unsynced
customers (with as many open incidents) among `--tenants` tenants; each page is fetched `--requests` times. The
figure is the server's work per page (session lookup, queries, template) — what a browser waits for before
painting; the static files (htmx 52 KB, the CSS) are cached after the first page. The database is a fresh SQLite
file unless CRM_BENCH_DATABASE_URL names a PostgreSQL server.

    .venv/bin/python bench/console.py [--rows 5000] [--tenants 200] [--requests 100]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.app import create_app  # noqa: E402
from api.auth import mint_token  # noqa: E402
from api.context import AppContext  # noqa: E402
from api.temporal import TemporalGateway  # noqa: E402
from bench.common import database_url, pct  # noqa: E402
from drivers.hubspot import HubSpotDriver  # noqa: E402
from drivers.models import FieldInfo  # noqa: E402
from settings import Settings  # noqa: E402
from store.field_mapping import save_schema  # noqa: E402
from store.migrate import upgrade_to_head  # noqa: E402
from store.models import Customer, Incident, Tenant  # noqa: E402
from store.session import create_engine, session_factory  # noqa: E402


async def run(url: str, rows: int, tenants: int, requests: int) -> None:
    settings = Settings(env="test", database_url=url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    busy = uuid.uuid4()
    async with sessions() as session, session.begin():
        session.add_all([Tenant(id=uuid.uuid4(), name=f"Tenant {n:04d}", provider="hubspot") for n in range(tenants)])
        session.add(Tenant(id=busy, name="Busy Realty", provider="hubspot", status="active"))
        customers = [Customer(tenant_id=busy, name="x", sync_state="failed", sync_attempts=3,
                              last_sync_error="unavailable:503") for _ in range(rows)]
        session.add_all(customers)
        await session.flush()
        session.add_all([Incident(tenant_id=busy, kind="crm_sync_failure", table_name="customers", row_id=c.id,
                                  last_error="unavailable:503", attempts=3) for c in customers])
        for obj in ("customer", "lead", "deal", "case"):  # an introspected CRM: the driver's mapped fields and 60
            mapped = {v for k, v in HubSpotDriver.default_field_catalog.items() if k.startswith(f"{obj}.")}  # others,
            await save_schema(session, busy, obj, [  # every 5th a 20-value picklist
                *(FieldInfo(name=name, label=name.title(), type="string") for name in sorted(mapped)),
                *(FieldInfo(name=f"field_{n:02d}", label=f"Field {n}", type="enumeration" if n % 5 == 0 else "string",
                            picklist_values=[f"Option {v}" for v in range(20)] if n % 5 == 0 else [], custom=n > 40)
                  for n in range(60))])
    ctx = AppContext(settings=settings, engine=engine, sessions=sessions, temporal=TemporalGateway(settings.temporal))
    pages = {"tenants": "/console/", "overview": f"/console/t/{busy}/", "sync": f"/console/t/{busy}/sync",
             "sync, one table": f"/console/t/{busy}/sync?table=customers&state=failed",
             "a record": f"/console/t/{busy}/sync?record={customers[0].id}",
             "incidents (200 shown)": f"/console/t/{busy}/incidents", "erasure": f"/console/t/{busy}/erasure",
             "connect": f"/console/t/{busy}/connect", "webhooks": f"/console/t/{busy}/webhooks",
             "field mapping": f"/console/t/{busy}/mapping?object=lead"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(context=ctx)),
                                 base_url="https://console.bench") as browser:
        form = await browser.get("/console/login")
        token = re.search(r'name="login_token" value="([^"]+)"', form.text)
        assert token is not None
        credential = mint_token(settings, subject="bench", role="operator", tenant_id=None)
        signed = await browser.post("/console/login", data={"credential": credential, "login_token": token.group(1)})
        assert signed.status_code == 303
        print(f"{tenants + 1} tenants; one with {rows} unsynced customers and {rows} open incidents; "
              f"{requests} requests per page ({make_kind(url)})")
        print(f"{'page':<24}{'median ms':>10}{'p95 ms':>10}{'KB':>8}")
        for name, path in pages.items():
            took: list[float] = []
            size = 0
            for _ in range(requests):
                start = time.perf_counter()
                answer = await browser.get(path)
                took.append((time.perf_counter() - start) * 1000)
                assert answer.status_code == 200, (path, answer.status_code)
                size = len(answer.content)
            print(f"{name:<24}{statistics.median(took):>10.1f}{pct(took, 0.95):>10.1f}{size / 1024:>8.1f}")
    await engine.dispose()


def make_kind(url: str) -> str:
    return "PostgreSQL" if url.startswith("postgresql") else "SQLite"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, database_url(Path(scratch)) as url:
        upgrade_to_head(url)
        asyncio.run(run(url, args.rows, args.tenants, args.requests))


if __name__ == "__main__":
    main()
