"""The combined fault campaign, longer and over several seeds, printing each run's ledger.

`--full` runs the full campaign instead (tests/support/campaign_full.py): PostgreSQL, Redis, a file-backed Temporal
dev server, `crm-sor api` and two `crm-sor worker` processes as real OS processes, HubSpot (OAuth) and Tekmetric
(form credentials) tenants connected through the API, and on a seeded schedule worker SIGKILLs mid-request, a
Temporal restart, a PostgreSQL restart, Redis stopped for a minute, the API killed and restarted, CRM storms, a
revoked refresh token and the operator's reconnect, one erasure a minute; then a ledger per tenant.

    .venv/bin/python bench/faults.py --full --seed 1 [--seconds 240] [--kills 10]

Agent load (conversations, messages, leads, cases, PATCHes) through the API with its relay, worker processes
SIGKILLed and restarted on a seeded schedule, HubSpot sandbox storms (5xx, 429 + Retry-After, lost responses,
expired tokens); then settle and audit (tests/support/campaign_ledger.py). Loopback only; bounded in time.

    .venv/bin/python bench/faults.py [--seeds 1 2 3] [--seconds 120] [--kills 10]
    CRM_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/faults.py
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402

from bench.common import database_url  # noqa: E402
from settings import Settings  # noqa: E402
from store.migrate import upgrade_to_head  # noqa: E402
from store.session import create_engine, session_factory  # noqa: E402
from tests.support.campaign import Campaign, run_campaign  # noqa: E402
from tests.support.campaign_full import run_full_campaign  # noqa: E402
from tests.support.campaign_schedule import FullCampaign  # noqa: E402
from workflows import search_attributes  # noqa: E402

KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # a throwaway credential key (no credential is stored)


async def run(url: str, args: argparse.Namespace) -> bool:
    upgrade_to_head(url)
    engine = create_engine(url)
    sessions = session_factory(engine)
    settings = Settings(database_url=url, env="bench", credential_encryption_key=KEY)
    clean = True
    async with await WorkflowEnvironment.start_local(
            data_converter=pydantic_data_converter, search_attributes=list(search_attributes.ALL),
            dev_server_existing_path=shutil.which("temporal") or str(Path(sys.executable).parent / "temporal"),
            dev_server_log_level="error") as env:
        for seed in args.seeds:
            plan = Campaign(seed=seed, seconds=args.seconds, rate=args.rate, workers=args.workers,
                            kills=args.kills, storms=args.storms, settle_seconds=args.settle)
            ledger = await run_campaign(env.client, settings, engine, sessions, plan)
            print(f"--- seed {seed}: {args.seconds:g} s of load at ~{args.rate:g} req/s, {args.workers} workers, "
                  f"{args.kills} kills, {args.storms} CRM storms ({'PostgreSQL' if 'postgresql' in url else 'SQLite'})")
            print("\n".join(ledger.lines()), flush=True)
            clean = clean and ledger.clean
    await engine.dispose()
    return clean


async def run_full(args: argparse.Namespace) -> bool:
    clean = True
    for seed in args.seeds:
        plan = FullCampaign(seed=seed, seconds=args.seconds or 240, rate=args.rate or 2, worker_kills=args.kills,
                            storms=args.storms, settle_seconds=args.settle)
        report = await run_full_campaign(plan)
        print("\n".join(report.lines()), flush=True)
        clean = clean and report.clean
    return clean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="every part a real process (see above)")
    parser.add_argument("--seeds", "--seed", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--seconds", type=float, help="of load (default 120; --full 240)")
    parser.add_argument("--rate", type=float, help="agent requests/s (default 8; --full 2 per tenant)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--storms", type=int, default=8)
    parser.add_argument("--settle", type=float, default=300)
    args = parser.parse_args()
    if args.full:
        sys.exit(0 if asyncio.run(run_full(args)) else 1)
    args.seconds, args.rate = args.seconds or 120, args.rate or 8
    with tempfile.TemporaryDirectory() as scratch, database_url(Path(scratch)) as url:
        sys.exit(0 if asyncio.run(run(url, args)) else 1)


if __name__ == "__main__":
    main()
