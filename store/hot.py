"""Single statements a voice caller waits for, with as little as possible between them and the database.

A lookup makes two statements before its CRM call: the phone index recall and the audit row of the reused
credential. Through SQLAlchemy's async `Connection` each costs about 0.35 ms of CPU (the Connection object,
greenlet switches, the isolation level set and reset, result wrapping): a third of the route's own time. On
PostgreSQL these run instead on the pool's own psycopg connection, taken from and given back to the engine's pool
(its checkout checks and reset apply as for every connection), in autocommit: about 0.2 ms, one round trip. The
statements stay SQLAlchemy Core, built once at module level with named `bindparam`s whose values come as `params`,
and compiled once for the dialect; on other databases (SQLite, the embedded default)
they go through the engine as everywhere else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Json
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection as SqlConnection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.expression import Insert, Select
from sqlalchemy.util import greenlet_spawn

Statement = Select[Any] | Insert
_compiled: dict[tuple[Statement, str], str] = {}  # holds the statements: module-level ones, built once


@asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[SqlConnection]:
    """An engine connection in autocommit: single statements without a BEGIN and a ROLLBACK round trip around each
    (the other databases' path below, and the phone index's batch reads and upserts)."""
    async with engine.connect() as connection:
        yield await connection.execution_options(isolation_level="AUTOCOMMIT")


async def scalar(engine: AsyncEngine, statement: Statement, params: Mapping[str, Any]) -> Any:
    """The first column of the first row (None without one)."""
    if engine.dialect.name != "postgresql":
        async with autocommit(engine) as connection:
            return await connection.scalar(statement, dict(params))
    async with _driver_autocommit(engine) as connection:
        cursor = await connection.execute(_sql(statement, engine.dialect), _adapted(params))
        row = await cursor.fetchone()
    return None if row is None else row[0]


async def execute(engine: AsyncEngine, statement: Statement, params: Mapping[str, Any]) -> None:
    """Run a statement whose result nobody reads (an INSERT)."""
    if engine.dialect.name != "postgresql":
        async with autocommit(engine) as connection:
            await connection.execute(statement, dict(params))
        return
    async with _driver_autocommit(engine) as connection:
        await connection.execute(_sql(statement, engine.dialect), _adapted(params))


@asynccontextmanager
async def _driver_autocommit(engine: AsyncEngine) -> AsyncIterator[AsyncConnection[Any]]:
    pooled = await engine.raw_connection()
    try:
        connection: AsyncConnection[Any] = pooled.driver_connection  # type: ignore[assignment]
        await connection.set_autocommit(True)
        yield connection
        await connection.set_autocommit(False)  # as the pool lends it to everyone else
    except BaseException:
        await greenlet_spawn(pooled.invalidate)  # in an unknown state (broken, mid-statement): closed, replaced
        raise
    finally:
        await greenlet_spawn(pooled.close)  # back to the pool, whose reset runs in SQLAlchemy's greenlet


def _sql(statement: Statement, dialect: Dialect) -> str:
    key = (statement, dialect.name)
    if key not in _compiled:
        _compiled[key] = str(statement.compile(dialect=dialect))
    return _compiled[key]


def _adapted(params: Mapping[str, Any]) -> dict[str, Any]:
    """psycopg adapts UUIDs, strings and datetimes itself; a dict is a JSON value."""
    return {name: Json(value) if isinstance(value, dict) else value for name, value in params.items()}
