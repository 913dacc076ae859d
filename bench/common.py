"""Helpers the benchmarks share. Scripts put the repository root on sys.path before importing this."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.databases import scratch_database


@contextmanager
def database_url(scratch: Path) -> Iterator[str]:
    """A fresh, unmigrated database for the run: a SQLite file, or one on CRM_BENCH_DATABASE_URL's PostgreSQL."""
    with scratch_database(os.environ.get("CRM_BENCH_DATABASE_URL"), scratch, migrate=False,
                          prefix="crm_sor_bench") as url:
        yield url


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
