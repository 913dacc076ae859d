"""Async engine and session factory for PostgreSQL (psycopg 3) and the embedded SQLite default."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


def async_url(url: str) -> str:
    """Accept plain `postgresql://` / `sqlite://` URLs and pick the async driver for them."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.drivername == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    return parsed.render_as_string(hide_password=False)


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    url = async_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    # Connections beyond pool_size (the max_overflow ones) are closed when returned: with SQLAlchemy's default
    # of 5, an API process serving a dozen concurrent agent calls connected afresh for most of them. The pool
    # opens connections only as concurrency needs them, so an idle process still holds few.
    kwargs.setdefault("pool_size", 20)
    return create_async_engine(url, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API and the worker read while the other writes; busy_timeout waits out writer locks.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # Deleted content is overwritten with zeros, not left in free pages: an erased subject is gone from the file.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


async def checkpoint_after_erasure(session: AsyncSession, attempts: int = 20) -> bool:
    """SQLite: copy the WAL into the database and truncate it, so erased rows' old page images leave the WAL
    file at once (secure_delete zeroes them in the database). True when the checkpoint completed; a reader
    holding an old snapshot makes SQLite answer busy, so it is tried again briefly. PostgreSQL: nothing to do
    here (its dead tuples wait for VACUUM: see the README).
    """
    if session.bind is None or session.bind.dialect.name != "sqlite":
        return True
    for attempt in range(attempts):
        busy = (await session.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))).scalar()
        if not busy:
            return True
        await asyncio.sleep(0.05 * (attempt + 1))
    return False


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
