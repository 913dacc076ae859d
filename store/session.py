"""Async engine and session factory for PostgreSQL (psycopg 3) and the embedded SQLite default.

Dead PostgreSQL connections are caught at checkout without a round trip: SQLAlchemy's `pool_pre_ping` sends a
`SELECT 1` every time a connection leaves the pool (a round trip on every statement of a voice lookup). Instead,
`_closed_by_server` looks at the idle connection's socket: a server restart, `pg_terminate_backend` or an idle
timeout leaves a termination notice or EOF there, which a pooled connection otherwise never has to read. The pool
then discards it and connects afresh (the checkout event's documented `DisconnectionError` protocol), so the first
request after a restart still succeeds. A peer that vanished silently (a dropped NAT entry) is found the same way
once TCP keepalives give up on it, and no connection lives longer than `pool_recycle`.
"""

from __future__ import annotations

import asyncio
import select
from pathlib import Path
from typing import Any

from psycopg import pq
from sqlalchemy import event, exc, text
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
    kwargs.setdefault("pool_recycle", 1800)
    connect_args = kwargs.pop("connect_args", {})
    for option, value in KEEPALIVES.items():
        connect_args.setdefault(option, value)
    # Connections beyond pool_size (the max_overflow ones) are closed when returned: with SQLAlchemy's default
    # of 5, an API process serving a dozen concurrent agent calls connected afresh for most of them. The pool
    # opens connections only as concurrency needs them, so an idle process still holds few.
    kwargs.setdefault("pool_size", 20)
    engine = create_async_engine(url, connect_args=connect_args, **kwargs)
    event.listen(engine.sync_engine, "checkout", _refuse_closed)
    return engine


# libpq's TCP keepalives: an idle connection whose peer vanished is noticed within about two minutes.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 60, "keepalives_interval": 10, "keepalives_count": 6}


def _closed_by_server(dbapi_connection: Any) -> bool:
    """True when an idle pooled connection has anything to read (a termination notice, EOF, a socket error):
    one poll(2) on its socket, no round trip."""
    try:
        pgconn = dbapi_connection.driver_connection.pgconn
        if pgconn.status != pq.ConnStatus.OK:
            return True
        poller = select.poll()
        poller.register(pgconn.socket, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    except Exception:  # psycopg raises when the connection is already closed
        return True


def _refuse_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    if _closed_by_server(dbapi_connection):
        raise exc.DisconnectionError("the server closed this pooled connection")


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
