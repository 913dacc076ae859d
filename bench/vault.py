"""Credential decrypt throughput and KMS traffic, against moto's KMS server on loopback (a real HTTP KMS).

Figures:
  - decrypts/s with a warm data-key cache: the seal/unseal path alone (kms and env rows), and the full
    `CredentialVault.load` (database read + decrypt + audit row insert);
  - KMS calls per 1,000 decrypts spread over a set of credential rows, for the default cache bounds and
    tighter ones, starting from a cold cache (each row's first decrypt must reach KMS);
  - cold decrypt latency (one KMS Decrypt round trip to the local emulator).

    .venv/bin/python bench/vault.py [--rows 20] [--decrypts 1000] [--postgres postgresql://…]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker  # noqa: E402

from settings import Settings  # noqa: E402
from store.models import TenantCredential  # noqa: E402
from store.session import create_engine, session_factory  # noqa: E402
from tests.unit.vault.support import (  # noqa: E402
    ACTOR,
    SYSTEM,
    KmsServer,
    make_tenant,
    make_vault,
    moto_kms,
    scratch_database,
)
from vault.credentials import row_ref, row_sealed  # noqa: E402
from vault.kms import DataKeyCache  # noqa: E402

KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
SECRET = {"access_token": "a" * 40, "refresh_token": "r" * 40, "client_id": "c" * 24, "client_secret": "s" * 32}


async def rows_of(sessions: async_sessionmaker[AsyncSession], scheme: str) -> list[TenantCredential]:
    async with sessions() as session:
        query = select(TenantCredential).where(TenantCredential.scheme == scheme)
        return list((await session.execute(query)).scalars())


async def seed(settings: Settings, sessions: async_sessionmaker[AsyncSession], kms: KmsServer, rows: int
               ) -> list[uuid.UUID]:
    kms_vault, env_vault = make_vault(settings, sessions, kms.envelope()), make_vault(settings, sessions)
    tenants = []
    for i in range(rows * 2):
        tenant = await make_tenant(sessions)
        await (kms_vault if i < rows else env_vault).store(tenant, "hubspot", SECRET, actor=SYSTEM)
        tenants.append(tenant)
    return tenants[:rows]


async def unseal_rate(settings: Settings, sessions: async_sessionmaker[AsyncSession], kms: KmsServer,
                      scheme: str, decrypts: int) -> float:
    sealer = make_vault(settings, sessions, kms.envelope()).sealer
    rows = await rows_of(sessions, scheme)
    for row in rows:  # warm the cache
        await sealer.open(row_ref(row), row_sealed(row))
    started = time.perf_counter()
    for i in range(decrypts):
        row = rows[i % len(rows)]
        await sealer.open(row_ref(row), row_sealed(row))
    return decrypts / (time.perf_counter() - started)


async def load_rate(settings: Settings, sessions: async_sessionmaker[AsyncSession], kms: KmsServer,
                    tenants: list[uuid.UUID], decrypts: int, callers: int) -> float:
    vault = make_vault(settings, sessions, kms.envelope())
    for tenant in tenants:
        await vault.load(tenant, ACTOR)

    async def caller(offset: int) -> None:
        for i in range(offset, decrypts, callers):
            await vault.load(tenants[i % len(tenants)], ACTOR)

    started = time.perf_counter()
    await asyncio.gather(*(caller(offset) for offset in range(callers)))
    return decrypts / (time.perf_counter() - started)


async def kms_calls(settings: Settings, sessions: async_sessionmaker[AsyncSession], kms: KmsServer,
                    cache: DataKeyCache, decrypts: int) -> tuple[int, float]:
    envelope = kms.envelope(cache=cache)
    sealer = make_vault(settings, sessions, envelope).sealer
    rows = await rows_of(sessions, "kms")
    order = random.Random(7)
    started = time.perf_counter()
    for _ in range(decrypts):
        row = rows[order.randrange(len(rows))]
        await sealer.open(row_ref(row), row_sealed(row))
    elapsed = time.perf_counter() - started
    return envelope.calls["Decrypt"], elapsed


async def cold_latency_ms(settings: Settings, sessions: async_sessionmaker[AsyncSession], kms: KmsServer) -> float:
    sealer = make_vault(settings, sessions, kms.envelope(cache=DataKeyCache(ttl_seconds=0))).sealer
    rows = await rows_of(sessions, "kms")
    started = time.perf_counter()
    for row in rows:
        await sealer.open(row_ref(row), row_sealed(row))
    return (time.perf_counter() - started) / len(rows) * 1000


async def main(rows: int, decrypts: int, postgres: str | None) -> None:
    logging.getLogger("vault").setLevel(logging.ERROR)
    with scratch_database(postgres, from_env=False) as url, moto_kms() as kms:
        engine = create_engine(url)
        sessions = session_factory(engine)
        settings = Settings(env="bench", database_url=url, credential_encryption_key=KEY)
        tenants = await seed(settings, sessions, kms, rows)
        backend = "PostgreSQL" if postgres else "SQLite"
        print(f"vault bench: {rows} kms rows + {rows} env rows, moto KMS at {kms.endpoint_url}, {backend}")
        kms_rate = await unseal_rate(settings, sessions, kms, "kms", decrypts * 20)
        env_rate = await unseal_rate(settings, sessions, kms, "env", decrypts * 20)
        serial = await load_rate(settings, sessions, kms, tenants, decrypts, callers=1)
        parallel = await load_rate(settings, sessions, kms, tenants, decrypts, callers=20)
        cold = await cold_latency_ms(settings, sessions, kms)
        print(f"  warm-cache decrypts/s, kms rows (unseal only)     {kms_rate:>10,.0f}")
        print(f"  warm-cache decrypts/s, env rows (unseal only)     {env_rate:>10,.0f}")
        print(f"  warm-cache vault.load/s, 1 caller                 {serial:>10,.0f}  (DB read, decrypt, audit commit)")
        print(f"  warm-cache vault.load/s, 20 concurrent callers    {parallel:>10,.0f}")
        print(f"  cold decrypt (one KMS Decrypt round trip)         {cold:>9.2f} ms")
        print(f"  KMS calls per {decrypts:,} decrypts over {rows} rows, cold start:")
        for label, cache in [("default: ttl 300 s, 1000 uses", DataKeyCache()),
                             ("ttl 300 s, 100 uses", DataKeyCache(max_uses=100)),
                             ("ttl 300 s, 10 uses", DataKeyCache(max_uses=10)),
                             ("no cache", DataKeyCache(ttl_seconds=0))]:
            calls, elapsed = await kms_calls(settings, sessions, kms, cache, decrypts)
            print(f"    {label:<32} {calls:>5} KMS calls  ({decrypts / elapsed:>9,.0f} decrypts/s)")
        await engine.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--decrypts", type=int, default=1000)
    parser.add_argument("--postgres", help="a PostgreSQL server URL; the bench creates and drops its own database")
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.decrypts, args.postgres))
