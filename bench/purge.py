"""The sweep's guarded purge on its own: rows/s deleting synced rows past their window, on a busy table.

The table holds `--rows` synced message rows past their window *and* `--keep` rows the guard must keep
(pending, failed, synced without a CRM id, synced but not yet due, held by an erasure), interleaved, so the
figure includes the guard's cost and the run checks that not one kept row went. Each batch is one
transaction of `content.purge(session, "messages", as_of, limit=batch)`, exactly the sweep's call.

    CRM_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/purge.py \
        [--rows 500000] [--keep 25000] [--held 100] [--batch 500 --batch 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import database_url  # noqa: E402
from store import content  # noqa: E402
from store.base import utcnow  # noqa: E402
from store.migrate import upgrade_to_head  # noqa: E402
from store.models import ErasureHold, ErasureRequest, Message  # noqa: E402
from store.session import create_engine, session_factory  # noqa: E402

KEPT_KINDS = ("pending", "failed", "no_crm_id", "not_yet_due", "held")


def _rows(count: int, keep: int, held: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Message rows (due ones with the kept ones spread among them) and the erasure holds of `held` of them.

    Windows end at distinct moments over the last day, as they do for rows synced over a day.
    """
    now = utcnow()
    tenant, request = uuid.uuid4(), uuid.uuid4()
    rows: list[dict[str, Any]] = []
    holds: list[dict[str, Any]] = []
    every = max(1, (count + keep) // max(1, keep)) if keep else 0
    kept = 0
    total = count + keep
    for i in range(total):
        due = now - timedelta(days=1) + timedelta(days=1) * i / total
        synced = due - timedelta(days=7)
        conversation = uuid.UUID(int=i // 50 + 1)  # 50 turns per conversation
        row: dict[str, Any] = {
            "id": uuid.uuid4(), "tenant_id": tenant, "conversation_id": conversation, "turn_id": str(i),
            "role": "agent", "text": "synced long ago", "spoken_at": synced, "created_at": synced,
            "updated_at": synced, "sync_state": "synced", "crm_external_id": "n1", "synced_at": synced,
            "sync_attempts": 1, "last_sync_error": None, "purge_after": due}
        if every and i % every == 0 and kept < keep:
            kind = KEPT_KINDS[kept % len(KEPT_KINDS)]
            if kind == "held" and len(holds) >= held:
                kind = "pending"
            kept += 1
            row["turn_id"] = f"keep-{kind}-{i}"
            if kind == "pending":
                row["sync_state"] = "pending"
            elif kind == "failed":
                row |= {"sync_state": "failed", "crm_external_id": None, "synced_at": None}
            elif kind == "no_crm_id":
                row["crm_external_id"] = None
            elif kind == "not_yet_due":
                row["purge_after"] = now + timedelta(days=1)
            else:
                holds.append({"request_id": request, "tenant_id": tenant, "table_name": "messages",
                              "row_id": row["id"]})
        rows.append(row)
    return rows, holds


async def one_run(url: str, count: int, keep: int, held: int, batch: int) -> tuple[float, int]:
    engine = create_engine(url)
    sessions = session_factory(engine)
    rows, holds = _rows(count, keep, held)
    async with engine.begin() as connection:
        clear = (["TRUNCATE messages, erasure_holds, erasure_requests CASCADE"] if url.startswith("postgresql")
                 else ["DELETE FROM erasure_holds", "DELETE FROM erasure_requests", "DELETE FROM messages"])
        for statement in clear:
            await connection.execute(text(statement))
        for i in range(0, len(rows), 5000):
            await connection.execute(insert(Message.__table__), rows[i:i + 5000])
        if holds:
            await connection.execute(insert(ErasureRequest.__table__).values(
                id=holds[0]["request_id"], tenant_id=holds[0]["tenant_id"], subject_hash="0" * 64,
                requested_by="bench", status="running", local_rows_scrubbed=0))
            await connection.execute(insert(ErasureHold.__table__), holds)
        if url.startswith("postgresql"):
            await connection.execute(text("ANALYZE messages"))
            await connection.execute(text("ANALYZE erasure_holds"))
    purged, as_of, start = 0, utcnow(), time.perf_counter()
    while True:  # the sweep's loop: one transaction per batch
        async with sessions() as session, session.begin():
            n = await content.purge(session, "messages", as_of, limit=batch)
        purged += n
        if n < batch:
            break
    elapsed = time.perf_counter() - start
    async with sessions() as session:
        left = int(await session.scalar(select(func.count()).select_from(Message)) or 0)
    await engine.dispose()
    if purged != count or left != keep:
        raise SystemExit(f"guard broken: purged {purged} of {count} due rows, {left} left of {keep} kept")
    return count / elapsed, left


async def run(url: str, count: int, keep: int, held: int, batches: list[int]) -> None:
    upgrade_to_head(url)
    backend = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    print(f"guarded purge ({backend}): {count} due message rows among {keep} the guard keeps "
          f"({', '.join(KEPT_KINDS)}; {held} held by an erasure)")
    for batch in batches:
        per_s, left = await one_run(url, count, keep, held, batch)
        print(f"batch {batch:>6} rows/transaction   {per_s:10.0f} rows/s   ({left} kept rows all still there)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--keep", type=int, default=25_000)
    parser.add_argument("--held", type=int, default=100, help="kept rows held by a running erasure")
    parser.add_argument("--batch", type=int, action="append")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, database_url(Path(scratch)) as url:
        asyncio.run(run(url, args.rows, args.keep, args.held, args.batch or [500, 10_000]))


if __name__ == "__main__":
    main()
