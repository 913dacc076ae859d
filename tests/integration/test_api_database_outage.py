"""The database away: ingest answers 503 problem+json with Retry-After (nothing stored, nothing lost: the
client retries); after a PostgreSQL restart the pool's checkout check (store/session.py) makes the first request
succeed."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from settings import Settings
from store.session import create_engine, session_factory
from tests.support.lifecycle import agent_api
from tests.support.network import closed_port
from tests.support.tenants import create_tenant

pytestmark = [pytest.mark.integration]


async def test_ingest_answers_503_with_retry_after_while_the_database_is_down(settings: Settings) -> None:
    down = create_engine(f"postgresql://postgres@127.0.0.1:{closed_port()}/nowhere")
    try:
        async with agent_api(settings, down, session_factory(down), uuid.uuid4()) as api:
            response = await api.post("/api/agent/customers", json={"name": "Ada Lovelace"})
    finally:
        await down.dispose()
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["Retry-After"] == "5"
    body = response.json()
    assert body["type"].endswith("/database-unavailable") and body["retry_after"] == 5
    assert "Ada" not in response.text


async def test_the_first_request_after_postgresql_dropped_our_connections_succeeds(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        is_postgres: bool) -> None:
    if not is_postgres:
        pytest.skip("PostgreSQL's own connection loss; SQLite has no server to restart")
    tenant = await create_tenant(sessions)
    own = create_engine(settings.database_url)  # a pool of its own, so only its connections are dropped
    try:
        async with agent_api(settings, own, session_factory(own), tenant) as api:
            assert (await api.post("/api/agent/customers", json={"name": "Before Restart"})).status_code == 201
            async with engine.connect() as admin:  # what a server restart does to every open connection
                # (the timeout waits until each backend has gone, as a restart's have before the server is back)
                await admin.execute(text(
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
            after = await api.post("/api/agent/customers", json={"name": "After Restart"})
        assert after.status_code == 201, after.text
    finally:
        await own.dispose()
