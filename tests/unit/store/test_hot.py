"""`store/hot.py`: the voice path's single statements, on the database the suite runs on (PostgreSQL: the pool's
own psycopg connection; SQLite: the engine). A connection goes back to the pool as it was lent (not in
autocommit), and one that failed mid-statement is not lent again."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest_asyncio
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from store import hot
from store.base import utcnow
from store.models import AuditLog
from store.session import create_engine
from vault.audit import _INSERT


@pytest_asyncio.fixture(loop_scope="session")
async def one_connection(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine whose pool holds one connection: every statement below reuses it."""
    engine = create_engine(database_url, pool_size=1, max_overflow=0)
    yield engine
    await engine.dispose()


def _row(tenant: uuid.UUID, request_id: str) -> dict[str, object]:
    return {"at": utcnow(), "tenant_id": tenant, "actor_type": "tool", "actor_id": "agent-7",
            "action": "credential.decrypt", "purpose": "crm_lookup_customer", "request_id": request_id,
            "conversation_id": None, "details": {"cached": True, "version": 3}}


_COUNT = select(func.count()).select_from(AuditLog).where(AuditLog.tenant_id == bindparam("tenant"))
_BROKEN = select(text("no_such_column")).select_from(AuditLog)


async def _count(engine: AsyncEngine, tenant: uuid.UUID) -> int:
    return int(await hot.scalar(engine, _COUNT, {"tenant": tenant}) or 0)


async def test_a_row_written_here_is_read_back_with_its_json(one_connection: AsyncEngine) -> None:
    tenant = uuid.uuid4()
    await hot.execute(one_connection, _INSERT, _row(tenant, "req-1"))
    async with one_connection.connect() as connection:
        row = (await connection.execute(select(AuditLog).where(AuditLog.tenant_id == tenant))).one()
    assert (row.request_id, row.details) == ("req-1", {"cached": True, "version": 3})


async def test_the_connection_goes_back_to_the_pool_out_of_autocommit(one_connection: AsyncEngine) -> None:
    tenant = uuid.uuid4()
    await hot.execute(one_connection, _INSERT, _row(tenant, "committed"))  # autocommit: no transaction to end
    async with one_connection.connect() as connection:  # the same pooled connection, lent to a transaction
        await connection.execute(_INSERT, _row(tenant, "rolled back"))
        await connection.rollback()
    assert await _count(one_connection, tenant) == 1


async def test_a_statement_that_fails_leaves_the_pool_usable(one_connection: AsyncEngine) -> None:
    tenant = uuid.uuid4()
    try:
        await hot.scalar(one_connection, _BROKEN, {})
    except Exception as exc:  # the database's own error, as the callers (a cache, the audit) log and count it
        assert "no_such_column" in str(exc)
    else:
        raise AssertionError("the statement should have failed")
    async with one_connection.connect() as connection:  # not a connection left in autocommit by the failure
        await connection.execute(_INSERT, _row(tenant, "rolled back"))
        await connection.rollback()
    await hot.execute(one_connection, _INSERT, _row(tenant, "after"))
    assert await _count(one_connection, tenant) == 1
