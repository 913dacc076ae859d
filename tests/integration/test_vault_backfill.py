"""The env → KMS credential backfill: activity steps with reads in between, and the workflow on the real dev
server while readers keep reading. Each test gets its own database (the backfill scans the whole table, and
other tests' rows are not ours to re-wrap), on the PostgreSQL server when one is configured.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.vault import VaultActivities
from activities.vault_types import RewrapBatchInput
from cli.main import main as cli_main
from settings import Settings, get_settings
from store.models import TenantCredential
from store.session import create_engine, session_factory
from tests.support.histories import keep_history
from tests.unit.vault.support import ACTOR, SYSTEM, KmsServer, make_tenant, make_vault, moto_kms, scratch_database
from vault.credentials import CredentialVault
from workflows.rewrap_credentials import WORKFLOW_ID, RewrapCredentialsWorkflow

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kms_server() -> Iterator[KmsServer]:
    with moto_kms() as server:
        yield server


@pytest.fixture
def own_database() -> Iterator[str]:
    with scratch_database() as url:
        yield url


@pytest.fixture
async def own_sessions(own_database: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(own_database)
    yield session_factory(engine)
    await engine.dispose()


async def mixed_table(settings: Settings, sessions: async_sessionmaker[AsyncSession], kms: KmsServer,
                      env_rows: int, kms_rows: int) -> dict[uuid.UUID, dict[str, str]]:
    """Tenants whose credentials are env rows and kms rows, interleaved; returns each tenant's secret."""
    env_vault, kms_vault = make_vault(settings, sessions), make_vault(settings, sessions, kms.envelope())
    expected: dict[uuid.UUID, dict[str, str]] = {}
    for i in range(env_rows + kms_rows):
        tenant = await make_tenant(sessions)
        expected[tenant] = {"access_token": f"token-{i}", "refresh_token": f"refresh-{i}"}
        await (env_vault if i < env_rows else kms_vault).store(tenant, "hubspot", expected[tenant], actor=SYSTEM)
    return expected


async def schemes(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessions() as session:
        rows = (await session.execute(select(TenantCredential.scheme))).scalars().all()
    return {scheme: rows.count(scheme) for scheme in ("env", "kms")}


async def read_all(vault: CredentialVault, expected: dict[uuid.UUID, dict[str, str]]) -> int:
    for tenant, secret in expected.items():
        assert (await vault.load(tenant, ACTOR)).secret == secret
    return len(expected)


async def test_batches_convert_the_table_while_reads_between_them_keep_working(
        settings: Settings, own_sessions: async_sessionmaker[AsyncSession], kms_server: KmsServer) -> None:
    expected = await mixed_table(settings, own_sessions, kms_server, env_rows=5, kms_rows=3)
    activities = VaultActivities(make_vault(settings, own_sessions, kms_server.envelope()))
    reader = make_vault(settings, own_sessions, kms_server.envelope())
    env = ActivityEnvironment()
    cursor: str | None = None
    seen_mixed = 0
    while True:
        result = await env.run(activities.rewrap_credentials_batch, RewrapBatchInput(after=cursor, batch_size=2))
        counts = await schemes(own_sessions)
        seen_mixed += counts["env"] > 0 and counts["kms"] > 3
        await read_all(reader, expected)  # mid-backfill: both schemes decrypt
        if result.next_cursor is None:
            break
        cursor = result.next_cursor
    assert seen_mixed >= 2 and await schemes(own_sessions) == {"env": 0, "kms": 8}
    again = await env.run(activities.rewrap_credentials_batch, RewrapBatchInput(batch_size=2))
    assert (again.scanned, again.rewrapped, again.next_cursor) == (0, 0, None)  # idempotent


async def test_a_retried_batch_resumes_after_its_heartbeated_cursor(
        settings: Settings, own_sessions: async_sessionmaker[AsyncSession], kms_server: KmsServer) -> None:
    await mixed_table(settings, own_sessions, kms_server, env_rows=4, kms_rows=0)
    async with own_sessions() as session:
        ids = sorted((await session.execute(select(TenantCredential.id))).scalars().all())
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, heartbeat_details=[str(ids[1])], attempt=2)  # a retried attempt
    heartbeats: list[object] = []
    env.on_heartbeat = lambda *details: heartbeats.append(details[0])
    activities = VaultActivities(make_vault(settings, own_sessions, kms_server.envelope()))
    result = await env.run(activities.rewrap_credentials_batch, RewrapBatchInput(batch_size=10))
    assert (result.scanned, result.rewrapped) == (2, 2) and heartbeats == [str(ids[2]), str(ids[3])]
    assert await schemes(own_sessions) == {"env": 2, "kms": 2}


async def test_an_env_row_under_another_key_is_reported_not_retried(
        settings: Settings, own_sessions: async_sessionmaker[AsyncSession], kms_server: KmsServer) -> None:
    other_key = SecretStr("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")
    other = settings.model_copy(update={"credential_encryption_key": other_key})
    stranger = await make_tenant(own_sessions)
    await make_vault(other, own_sessions).store(stranger, "hubspot", {"k": "v"}, actor=SYSTEM)
    activities = VaultActivities(make_vault(settings, own_sessions, kms_server.envelope()))
    result = await ActivityEnvironment().run(activities.rewrap_credentials_batch, RewrapBatchInput())
    async with own_sessions() as session:
        row_id = (await session.execute(select(TenantCredential.id))).scalar_one()
    assert result.unreadable == [str(row_id)] and result.rewrapped == 0


async def test_the_workflow_backfills_a_mixed_table_while_readers_keep_reading(
        settings: Settings, own_database: str, own_sessions: async_sessionmaker[AsyncSession],
        kms_server: KmsServer, temporal_client: Client, task_queue: str, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = await mixed_table(settings, own_sessions, kms_server, env_rows=12, kms_rows=4)
    activities = VaultActivities(make_vault(settings, own_sessions, kms_server.envelope()))
    reader = make_vault(settings, own_sessions, kms_server.envelope())
    for name, value in {"CRM_TEMPORAL__ADDRESS": temporal_client.service_client.config.target_host,
                        "CRM_TEMPORAL__TASK_QUEUE": task_queue, "CRM_KMS__KEY_ID": kms_server.key_id,
                        "CRM_DATABASE_URL": own_database}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    if await _running(temporal_client):  # the fixed id is session-wide on the dev server: start clean
        await temporal_client.get_workflow_handle(WORKFLOW_ID).terminate()
    async with Worker(temporal_client, task_queue=task_queue, workflows=[RewrapCredentialsWorkflow],
                      activities=activities.all(), activity_executor=ThreadPoolExecutor(2)):
        # The operator's command, in its own thread and event loop as in its own process.
        status = await asyncio.to_thread(cli_main, ["credentials", "rewrap", "--batch-size", "3"])
        assert status == 0
        handle = temporal_client.get_workflow_handle_for(RewrapCredentialsWorkflow.run, WORKFLOW_ID)
        done = asyncio.ensure_future(handle.result())
        reads = 0
        while not done.done():
            reads += await read_all(reader, expected)
        result = done.result()
        await keep_history(temporal_client, WORKFLOW_ID, "rewrap_credentials")
        reads += await read_all(reader, expected)
        description = await handle.describe()
    get_settings.cache_clear()
    assert (result.scanned, result.rewrapped, result.unreadable) == (12, 12, [])
    assert reads >= 2 * len(expected)
    assert await schemes(own_sessions) == {"env": 0, "kms": 16}
    table = SearchAttributeKey.for_keyword("CrmTable")
    assert description.typed_search_attributes.get(table) == "tenant_credentials"


async def _running(client: Client) -> bool:
    try:
        description = await client.get_workflow_handle(WORKFLOW_ID).describe()
    except Exception:  # not found: nothing to clear
        return False
    return description.status is not None and description.status.name == "RUNNING"


def test_rewrap_without_kms_is_a_clear_cli_error(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("CRM_KMS__KEY_ID", raising=False)
    get_settings.cache_clear()
    try:
        assert cli_main(["credentials", "rewrap"]) == 2
    finally:
        get_settings.cache_clear()
    assert "CRM_KMS__KEY_ID" in capsys.readouterr().err
