"""Composition root: builds the Temporal client, the activity instances and runs the worker.

Every workflow and activity the service runs is registered here and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pydantic
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from activities.erasure import ErasureActivities
from activities.mirror import MirrorActivities
from activities.sweep import SweepActivities
from activities.transcript import TranscriptActivities
from activities.vault import VaultActivities
from api.lifecycle import ensure_sweep_schedule
from api.temporal import connect_temporal
from settings import Settings, get_settings
from store.session import create_engine, session_factory
from vault.provider import VaultDriverProvider
from workflows.forget import ForgetWorkflow
from workflows.record_lifecycle import RecordLifecycleWorkflow
from workflows.rewrap_credentials import RewrapCredentialsWorkflow
from workflows.sweep import SweepWorkflow
from workflows.transcript import TranscriptWorkflow

log = logging.getLogger(__name__)

WORKFLOWS: list[type] = [ForgetWorkflow, RewrapCredentialsWorkflow, RecordLifecycleWorkflow, TranscriptWorkflow,
                          SweepWorkflow]


def build_activities(settings: Settings, engine: AsyncEngine | None = None) -> list[Callable[..., Any]]:
    """Activity callables bound to this process's engine (or the given one), vault and driver factory."""
    sessions = session_factory(engine or create_engine(settings.database_url))
    drivers = VaultDriverProvider.from_settings(settings, sessions)
    erasure = ErasureActivities(sessions, drivers, settings.subject_hash_key.get_secret_value())
    lifecycle = [*MirrorActivities(sessions, drivers).all(), *TranscriptActivities(sessions, drivers).all(),
                 *SweepActivities(sessions).all()]
    return [*erasure.all(), *VaultActivities(drivers.vault).all(), *lifecycle]


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
    )


async def run_worker(settings: Settings | None = None, stop: asyncio.Event | None = None) -> None:
    settings = settings or get_settings()
    client = await connect_temporal(settings.temporal)
    await ensure_sweep_schedule(client, settings.temporal.task_queue)  # idempotent: every worker may register it
    worker = build_worker(client, settings)
    log.info("worker polling task queue %s", settings.temporal.task_queue)
    if stop is None:
        await worker.run()
        return
    async with worker:
        await stop.wait()


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    # httpx logs every request URL at INFO, and CRM lookups put phones and emails in URLs: no content in logs.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(run_worker())


if __name__ == "__main__":
    main()
