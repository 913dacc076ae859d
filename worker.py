"""Composition root: builds the Temporal client, the activity instances and runs the worker.

Every workflow and activity the service runs is registered here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pydantic
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from activities.crm_poll import CrmPollActivities
from activities.erasure import ErasureActivities
from activities.mirror import MirrorActivities
from activities.outbound import OutboundActivities
from activities.sweep import SweepActivities
from activities.vault import VaultActivities
from api.lifecycle import ensure_sweep_schedule
from api.temporal import connect_temporal
from settings import Settings, get_settings
from store.outbound import DIALER_CREDENTIAL
from store.session import create_engine, session_factory
from vault.connections import Actor
from vault.credentials import CredentialVault
from vault.provider import VaultDriverProvider
from workflows.crm_poll import CrmPollWorkflow
from workflows.forget import ForgetWorkflow
from workflows.outbound_call import OutboundCallWorkflow
from workflows.rewrap_credentials import RewrapCredentialsWorkflow
from workflows.sweep import SweepWorkflow
from workflows.tenant_mirror import TenantMirrorWorkflow

log = logging.getLogger(__name__)

WORKFLOWS: list[type] = [ForgetWorkflow, RewrapCredentialsWorkflow, TenantMirrorWorkflow,
                          SweepWorkflow, OutboundCallWorkflow, CrmPollWorkflow]


def build_activities(settings: Settings, engine: AsyncEngine | None = None) -> list[Callable[..., Any]]:
    """Activity callables bound to this process's engine (or the given one), vault and driver factory."""
    sessions = session_factory(engine or create_engine(settings.database_url))
    drivers = VaultDriverProvider.from_settings(settings, sessions)
    erasure = ErasureActivities(sessions, drivers, settings.subject_hash_key.get_secret_value())
    lifecycle = [*MirrorActivities(sessions, drivers).all(), *SweepActivities(sessions).all()]
    outbound = OutboundActivities(sessions, drivers, settings.subject_hash_key.get_secret_value(),
                                  dialer_secret=dialer_secret_loader(drivers.vault))
    return [*erasure.all(), *VaultActivities(drivers.vault).all(), *lifecycle, *outbound.all(),
            *CrmPollActivities(sessions, drivers).all()]


def dialer_secret_loader(vault: CredentialVault) -> Callable[[uuid.UUID], Awaitable[str]]:
    """The tenant's dialer signing secret, from the vault (audited as a decrypt by the outbound worker)."""

    async def load(tenant_id: uuid.UUID) -> str:
        actor = Actor(type="system", id="outbound", purpose="sign call request")
        return str((await vault.load(tenant_id, actor, DIALER_CREDENTIAL)).secret["secret"])

    return load


def build_worker(client: Client, settings: Settings, *, workflows: Sequence[type] | None = None,
                 activities: Sequence[Callable[..., Any]] | None = None,
                 task_queue: str | None = None) -> Worker:
    return Worker(
        client,
        task_queue=task_queue or settings.temporal.task_queue,
        workflows=list(WORKFLOWS if workflows is None else workflows),
        activities=list(build_activities(settings) if activities is None else activities),
        activity_executor=ThreadPoolExecutor(max_workers=4),
        # Bad input must fail the workflow instead of retrying its task forever (STYLE §2.3).
        workflow_failure_exception_types=[pydantic.ValidationError],
        graceful_shutdown_timeout=timedelta(seconds=10),
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
    )


# The SDK sends heartbeats at most every min(0.8 x heartbeat timeout, this): with its default (60 s) a 10 s
# heartbeat timeout leaves 2 s of slack, and a busy worker or server misses it, failing healthy CRM writes.
HEARTBEAT_THROTTLE = timedelta(seconds=2)

# Waits between connection attempts while Temporal is unreachable (seconds): quick at first, then capped.
RECONNECT_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0)


async def connect_when_reachable(settings: Settings, stop: asyncio.Event | None = None) -> Client | None:
    """Connect to Temporal, waiting with capped backoff while it is unreachable (a worker started before the
    server, or during its restart, waits instead of exiting); None when `stop` is set first."""
    for attempt in itertools.count():
        try:
            return await asyncio.wait_for(connect_temporal(settings.temporal), timeout=10)
        except Exception as exc:  # unreachable or not ready yet: whatever it is, waiting is the answer
            delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
            log.warning("Temporal at %s unreachable (%s); retrying in %.0f s", settings.temporal.address,
                        type(exc).__name__, delay)
            if stop is None:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                if stop.is_set():
                    return None
    raise AssertionError("unreachable")


async def run_worker(settings: Settings | None = None, stop: asyncio.Event | None = None) -> None:
    """Run the worker until `stop` (or forever), reconnecting when Temporal is lost for good.

    Short outages are the SDK's: pollers retry on their own. A worker that fails fatally (the server gone long
    enough for polling to give up) is rebuilt on a fresh connection after a pause, instead of exiting.
    """
    settings = settings or get_settings()
    activities = build_activities(settings)
    while stop is None or not stop.is_set():
        client = await connect_when_reachable(settings, stop)
        if client is None:
            return
        try:
            await ensure_sweep_schedule(client, settings.temporal.task_queue)  # idempotent: every worker may
            if await _run_until_stopped(build_worker(client, settings, activities=activities), settings, stop):
                return
        except Exception as exc:
            log.error("worker stopped (%s); reconnecting to Temporal", type(exc).__name__)
            await asyncio.sleep(1.0)


async def _run_until_stopped(worker: Worker, settings: Settings, stop: asyncio.Event | None) -> bool:
    """Run until `stop` (True: shut down gracefully) or until the worker ends by itself (raises if it failed)."""
    log.info("worker polling task queue %s", settings.temporal.task_queue)
    running = asyncio.create_task(worker.run())
    waiting = [running] + ([asyncio.create_task(stop.wait())] if stop is not None else [])
    done, pending = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        if task is not running:
            task.cancel()
    if running not in done:
        await worker.shutdown()
        await running
        return True
    running.result()
    return True


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    # httpx logs every request URL at INFO, and CRM lookups put phones and emails in URLs: no content in logs.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(run_worker())


if __name__ == "__main__":
    main()
