"""Record lifecycle activities: write a class-(c) row to the tenant's CRM, purge it, escalate it.

Each activity reads the row itself (payloads carry ids only), reaches the CRM only through
`DriverProvider.open(tenant, Actor(type="system"))`, and is idempotent: a retry re-reads the row and the
ledger and converges on the same CRM record.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities import crm_plan
from activities.contained import contained
from activities.crm_plan import Related, WritePlan
from activities.crm_write import as_application_error, error_label, execute, row_key
from activities.types import (
    IncidentInput,
    IncidentResult,
    MirrorRecordInput,
    MirrorRecordResult,
    PurgeRecordInput,
    PurgeRecordResult,
)
from drivers.base import BaseDriver
from drivers.errors import DriverError
from store import content, incidents, outbox
from store.base import SyncState, utcnow
from store.erasure import erasure_blocks_mirror
from store.models import Customer, Lead, QualificationState
from vault.connections import Actor, DriverProvider

Clock = Callable[[], datetime]


@asynccontextmanager
async def heartbeating() -> AsyncIterator[None]:
    """Heartbeat in the background while a CRM write runs, when the workflow gave a heartbeat timeout.

    A worker killed mid-write stops beating, so Temporal retries the write elsewhere after the (short)
    heartbeat timeout instead of the whole start-to-close timeout. Beats carry no details (ids only live in
    the input). Workers must send them promptly: see HEARTBEAT_THROTTLE in worker.py.
    """
    timeout = activity.info().heartbeat_timeout
    if not timeout:
        yield
        return

    async def beat() -> None:
        while True:
            activity.heartbeat()
            await asyncio.sleep(timeout.total_seconds() / 4)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
EXPECTED = (DriverError, crm_plan.DependencyPendingError, crm_plan.UnmappedFieldsError, LookupError)


def system_actor(purpose: str) -> Actor:
    """The credential-decrypt audit identity of a lifecycle: its workflow id (ids only)."""
    info = activity.info()
    return Actor(type="system", id=info.workflow_id or "lifecycle", purpose=purpose,
                 request_id=f"{info.workflow_run_id}:{info.activity_id}:{info.attempt}")


class LifecycleActivityBase:
    """What every lifecycle activity class holds: the database and the way to a tenant's CRM."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], drivers: DriverProvider, *,
                 clock: Clock = utcnow) -> None:
        self._sessions, self._drivers, self._clock = sessions, drivers, clock

    async def _erased(self, tenant_id: uuid.UUID, table: str, row_id: uuid.UUID) -> bool:
        async with self._sessions() as session:
            return await erasure_blocks_mirror(session, tenant_id, table, row_id)

    async def _failed(self, tenant_id: uuid.UUID, table: str, row_ids: list[uuid.UUID], exc: BaseException
                      ) -> None:
        """Count the attempt on the rows (and their open incident) before Temporal schedules the retry."""
        label = error_label(exc)
        async with self._sessions() as session, session.begin():
            for row_id in row_ids:
                attempts = await content.record_failure(session, table, row_id, label)
                await incidents.note_attempt(session, table, row_id, last_error=label, attempts=attempts)
        activity.logger.info("crm write failed", extra={"tenant": str(tenant_id), "table": table,
                                                        "error": label})


class MirrorActivities(LifecycleActivityBase):
    """Activities of `RecordLifecycleWorkflow` (customers, leads, qualification states, appointments, cases)."""

    def all(self) -> list[Callable[..., Any]]:
        return [self.mirror_record, self.purge_record, self.open_sync_incident]

    @activity.defn
    @contained
    async def mirror_record(self, input: MirrorRecordInput) -> MirrorRecordResult:
        """Create (or partially update) the row's CRM record; mark it synced unless it changed meanwhile."""
        async with self._sessions() as session:
            row = await content.load(session, input.table, input.tenant_id, input.row_id)
            related = await _related(session, input.tenant_id, row) if row is not None else Related()
        if row is None:
            return MirrorRecordResult(outcome="gone")
        key = row_key(input.table, input.row_id)
        try:
            async with heartbeating(), self._drivers.open(input.tenant_id, system_actor("mirror")) as driver:
                async with self._sessions() as session:
                    mapping = await crm_plan.write_map(session, input.tenant_id, driver)
                plan = _plan(input.table, row, related, mapping, driver)
                if await self._erased(input.tenant_id, input.table, input.row_id):
                    return MirrorRecordResult(outcome="erased")
                external_id = await execute(self._sessions, driver, input.tenant_id, plan, key, row.updated_at)
        except EXPECTED as exc:
            await self._failed(input.tenant_id, input.table, [input.row_id], exc)
            if isinstance(exc, crm_plan.DependencyPendingError):  # the workflow waits for the wake, not a backoff
                ready = await self._dependency_synced(input.tenant_id, input.table, input.row_id, exc.table)
                return MirrorRecordResult(outcome="retry" if ready else "waiting")
            raise as_application_error(exc) from None
        synced_at = self._clock()
        async with self._sessions() as session, session.begin():
            marked = await content.mark_synced(session, input.table, row, external_id, synced_at, input.retention)
            if marked:
                await incidents.resolve_for_rows(session, input.table, [input.row_id])
                waiting = await content.waiting_on(session, input.table, input.row_id)
                await outbox.add(session, [outbox.intent_values(input.tenant_id, table, row_id, "wake")
                                           for table, row_id in waiting])
        if not marked:
            return MirrorRecordResult(outcome="stale")
        return MirrorRecordResult(outcome="synced",
                                  purge_after=synced_at + input.retention)

    async def _dependency_synced(self, tenant_id: uuid.UUID, table: str, row_id: uuid.UUID, dependency: str
                                 ) -> bool:
        """Whether the row's dependency reached the CRM after we looked (then its wake, sent before our failure
        mark was visible, missed us: write again now instead of waiting)."""
        async with self._sessions() as session:
            row = await content.load(session, table, tenant_id, row_id)
            related = await _related(session, tenant_id, row) if row is not None else Related()
        waited_for = related.customer if dependency == "customers" else related.lead
        return row is None or (waited_for is not None and waited_for.crm_external_id is not None)

    @activity.defn
    @contained
    async def purge_record(self, input: PurgeRecordInput) -> PurgeRecordResult:
        """Delete the row if (and only if, by the statement itself) it is synced and past its window."""
        async with self._sessions() as session, session.begin():
            purged = await content.purge(session, input.table, input.as_of, tenant_id=input.tenant_id,
                                         row_ids=[input.row_id])
            if purged:
                return PurgeRecordResult(purged=True, exists=False)
            row = await content.load(session, input.table, input.tenant_id, input.row_id)
        if row is None:
            return PurgeRecordResult(purged=False, exists=False)
        synced = row.sync_state == SyncState.SYNCED.value
        return PurgeRecordResult(purged=False, exists=True, synced=synced,
                                 purge_after=row.purge_after if synced else None)

    @activity.defn
    @contained
    async def open_sync_incident(self, input: IncidentInput) -> IncidentResult:
        """One `crm_sync_failure` incident for the row (tenant, table, row, last error type, attempts)."""
        async with self._sessions() as session, session.begin():
            row = await content.load(session, input.table, input.tenant_id, input.row_id)
            if row is None or row.sync_state == SyncState.SYNCED.value:
                return IncidentResult(opened=False)
            opened = await incidents.open_sync_failure(
                session, input.tenant_id, input.table, input.row_id,
                last_error=row.last_sync_error or "not_mirrored", attempts=row.sync_attempts)
        return IncidentResult(opened=opened)


async def _related(session: AsyncSession, tenant_id: uuid.UUID, row: Any) -> Related:
    related = Related()
    lead_id = getattr(row, "lead_id", None)
    if lead_id is not None:
        related.lead = await session.get(Lead, lead_id)
    if isinstance(row, Lead):
        related.lead = row
        found = await session.execute(select(QualificationState).where(
            QualificationState.lead_id == row.id, QualificationState.tenant_id == tenant_id))
        related.qualification = found.scalar_one_or_none()
    customer_id = getattr(row, "customer_id", None) or (related.lead.customer_id if related.lead else None)
    if customer_id is not None:
        customer = await session.get(Customer, customer_id)
        related.customer = customer if customer is not None and customer.tenant_id == tenant_id else None
    if related.lead is not None and related.lead.tenant_id != tenant_id:
        related.lead = None
    return related


def _plan(table: str, row: Any, related: Related, mapping: crm_plan.TenantMapping, driver: BaseDriver) -> WritePlan:
    if table == "customers":
        return crm_plan.plan_customer(row, mapping)
    if table == "leads":
        return crm_plan.plan_lead(row, related, mapping, driver.slug)
    if table == "qualification_states":
        return crm_plan.plan_qualification(row, related, mapping, driver.slug)
    if table == "cases":
        return crm_plan.plan_case(row, mapping)
    if table == "appointments":
        return crm_plan.plan_appointment(row, related, mapping, driver.supported_objects)
    raise crm_plan.UnmappedFieldsError([f"{table}.*"])
