"""Test plumbing for the mirror: a worker with the tenant mirror and the sweep, a relay, an agent API client.

Everything is real: the Temporal server handed in (dev or time-skipping), the database, the provider
sandbox behind the `DriverProvider`. Only the wiring is shortened.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pydantic
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

from activities.mirror import MirrorActivities
from activities.sweep import SweepActivities
from api.app import create_app
from api.auth import mint_token
from api.context import AppContext
from api.lifecycle import MirrorOptions, mirror_workflow_id
from api.relay import OutboxRelay
from api.temporal import TemporalGateway
from settings import Settings
from store import content
from tests.support.sandbox_provider import SandboxDriverProvider, TransportWrapper
from tests.support.tenants import create_tenant
from vault.connections import DriverProvider
from worker import HEARTBEAT_THROTTLE
from workflows.sweep import SweepWorkflow
from workflows.tenant_mirror import TenantMirrorWorkflow
from workflows.types import MirrorPolicy

LIFECYCLE_WORKFLOWS: list[type] = [TenantMirrorWorkflow, SweepWorkflow]
FAST = MirrorPolicy(first_backoff=timedelta(milliseconds=200), max_backoff=timedelta(seconds=2),
                    pass_timeout=timedelta(seconds=60))


def lifecycle_activities(sessions: async_sessionmaker[AsyncSession], drivers: DriverProvider
                         ) -> list[Callable[..., Any]]:
    return [*MirrorActivities(sessions, drivers).all(), *SweepActivities(sessions).all()]


def lifecycle_worker(client: Client, sessions: async_sessionmaker[AsyncSession], drivers: DriverProvider,
                     task_queue: str) -> Worker:
    return Worker(client, task_queue=task_queue, workflows=LIFECYCLE_WORKFLOWS,
                  activities=lifecycle_activities(sessions, drivers),
                  workflow_failure_exception_types=[pydantic.ValidationError],
                  graceful_shutdown_timeout=timedelta(seconds=5), max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE)


def relay_for(engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], client: Client | TemporalGateway,
              task_queue: str, *, tenants: list[uuid.UUID], policy: MirrorPolicy = FAST,
              passes_per_run: int = 500) -> OutboxRelay:
    """A relay for the test's own tenants: tests share one database, and other tests' intents are not ours."""
    gateway = client if isinstance(client, TemporalGateway) else None

    async def source() -> Client:
        return await gateway.client() if gateway is not None else client  # type: ignore[return-value]

    options = MirrorOptions(task_queue=task_queue, policy=policy, passes_per_run=passes_per_run)
    return OutboxRelay(engine, sessions, source, options, tenants=tenants)


@asynccontextmanager
async def agent_api(settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
                    tenant_id: uuid.UUID, *, relay: OutboxRelay | None = None,
                    temporal: TemporalGateway | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """The real app (in-process) with an agent token for the tenant."""
    context = AppContext(settings=settings, engine=engine, sessions=sessions,
                         temporal=temporal or TemporalGateway(settings.temporal))
    if relay is not None:
        context.extras["relay"] = relay
    token = mint_token(settings, subject="agent-test", role="agent", tenant_id=tenant_id)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(context=context)),
                                 base_url="http://api.test",
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


def operator_headers(settings: Settings, tenant_id: uuid.UUID | None = None) -> dict[str, str]:
    token = mint_token(settings, subject="operator-test", role="operator", tenant_id=tenant_id)
    return {"Authorization": f"Bearer {token}"}


async def row_of(sessions: async_sessionmaker[AsyncSession], table: str, tenant_id: uuid.UUID,
                 row_id: uuid.UUID) -> Any | None:
    async with sessions() as session:
        return await content.load(session, table, tenant_id, row_id)


async def is_running(client: Client, workflow_id: str) -> bool:
    description = await client.get_workflow_handle(workflow_id).describe()
    return description.status == WorkflowExecutionStatus.RUNNING


async def is_closed(client: Client, workflow_id: str) -> bool:
    """The latest run of `workflow_id` exists and is no longer running (for `eventually`)."""
    return not await is_running(client, workflow_id)


async def eventually(check: Callable[[], Any], *, within: float = 30.0, every: float = 0.1) -> Any:
    """Poll an async or sync check until it returns something truthy (then return it); fail after `within`."""
    import asyncio
    import inspect

    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(every)


async def synced(sessions: async_sessionmaker[AsyncSession], table: str, tenant_id: uuid.UUID,
                 row_id: uuid.UUID) -> Any | None:
    """The row once it is synced (for `eventually`), else None."""
    row = await row_of(sessions, table, tenant_id, row_id)
    return row if row is not None and row.sync_state == "synced" else None


@dataclass
class Rig:
    """One test's lifecycle setup: its tenant, the sandbox CRM behind it, a relay for it and the agent API."""

    tenant: uuid.UUID
    drivers: SandboxDriverProvider
    relay: OutboxRelay
    api: httpx.AsyncClient

    @property
    def hubspot(self) -> Any:
        return self.drivers.state("hubspot")

    @property
    def mirror_id(self) -> str:
        return mirror_workflow_id(self.tenant)


@asynccontextmanager
async def lifecycle_rig(settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
                        client: Client, task_queue: str, *, policy: MirrorPolicy = FAST,
                        wrap: TransportWrapper | None = None) -> AsyncIterator[Rig]:
    """A fresh tenant on the HubSpot sandbox, a lifecycle worker on `client`, a relay and the agent API.

    `wrap` wraps the sandbox transport (tests/support/faults.py: hold or lose a CRM response)."""
    drivers = SandboxDriverProvider(sessions, wrap=wrap)
    tenant = await create_tenant(sessions)
    relay = relay_for(engine, sessions, client, task_queue, tenants=[tenant], policy=policy)
    try:
        async with lifecycle_worker(client, sessions, drivers, task_queue), \
                agent_api(settings, engine, sessions, tenant, relay=relay) as api:
            yield Rig(tenant, drivers, relay, api)
    finally:
        await drivers.aclose()
