"""A database of its own for a test run, a test or a benchmark: created here, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from store.migrate import upgrade_to_head


@contextmanager
def scratch_database(server: str | None, sqlite_dir: Path, *, migrate: bool = True,
                     prefix: str = "crm_sor_scratch") -> Iterator[str]:
    """A fresh database on the PostgreSQL `server` (any database URL on it), else a SQLite file in `sqlite_dir`.

    Yields an async URL (`postgresql+psycopg`, `sqlite+aiosqlite`), migrated to head unless `migrate=False`.
    """
    if not server:
        url = f"sqlite+aiosqlite:///{sqlite_dir / f'{prefix}.db'}"
        if migrate:
            upgrade_to_head(url)
        yield url
        return
    admin = make_url(server).set(drivername="postgresql")
    admin_dsn, name = admin.render_as_string(hide_password=False), f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_dsn, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        url = admin.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
        if migrate:
            upgrade_to_head(url)
        yield url
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
