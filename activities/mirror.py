"""The tenant mirror's activity: one pass over a tenant's due rows, written to its CRM in batches.

A pass reads the rows itself (payloads carry ids only), reaches the CRM only through
`DriverProvider.open(tenant, Actor(type="system"))`, and goes table by table in dependency order — customers,
then the leads, qualification states, appointments and cases that hang off them, then conversations with their
messages (one transcript note each) — so a row written in this pass is there for the rows after it.

Each row's outcome is kept on the row: synced (compare-and-set on `updated_at`: a row changed while its write was
in flight stays pending and goes again), or failed with its error code, a state saying who fixes it (`retrying`:
time; `blocked`: a person) and `retry_at` (capped exponential backoff, or the provider's Retry-After). A failure
fails only its row; the whole pass stops only for what hits the whole account — a rate limit (the workflow waits
it out on a durable timer) or an auth error (the workflow parks until the connection is fixed).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities import crm_plan, transcript
from activities.contained import contained
from activities.crm_plan import Related, WritePlan
from activities.crm_write import ACCOUNT_WIDE, RecordJob, error_label, execute_many, row_key
from activities.tally import Tally
from activities.types import MirrorPassInput, MirrorPassResult
from drivers.base import BaseDriver
from drivers.errors import AuthError, DriverError, RateLimitedError
from store import content, incidents
from store.base import SyncState, utcnow
from store.erasure import held_rows
from store.models import Customer, Lead, QualificationState
from vault.connections import Actor, DriverProvider

Clock = Callable[[], datetime]
RECORD_TABLES = ("customers", "leads", "qualification_states", "appointments", "cases")
ERASURE_HOLD = "erasure_hold"


@asynccontextmanager
async def heartbeating() -> AsyncIterator[None]:
    """Heartbeat in the background while CRM writes run, when the workflow gave a heartbeat timeout.

    A worker killed mid-write stops beating, so Temporal retries the pass elsewhere after the (short)
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


def system_actor(purpose: str) -> Actor:
    """The credential-decrypt audit identity of the mirror: its workflow id (ids only)."""
    info = activity.info()
    return Actor(type="system", id=info.workflow_id or "mirror", purpose=purpose,
                 request_id=f"{info.workflow_run_id}:{info.activity_id}:{info.attempt}")


class MirrorActivities:
    """Activities of `TenantMirrorWorkflow`."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], drivers: DriverProvider, *,
                 clock: Clock = utcnow) -> None:
        self._sessions, self._drivers, self._clock = sessions, drivers, clock

    def all(self) -> list[Callable[..., Any]]:
        return [self.mirror_pass]

    @activity.defn
    @contained
    async def mirror_pass(self, input: MirrorPassInput) -> MirrorPassResult:
        """Write the tenant's due rows (up to `batch_size` per table) and report what is left."""
        clock = self._pass_clock(input)
        now, tally, park = clock(), Tally(), None
        try:
            async with heartbeating(), self._drivers.open(input.tenant_id, system_actor("mirror")) as driver:
                async with self._sessions() as session:
                    mapping = await crm_plan.write_map(session, input.tenant_id, driver)
                for table in RECORD_TABLES:
                    if tally.stop is None:
                        await self._records(driver, mapping, table, input, clock, tally)
                if tally.stop is None:
                    await transcript.mirror_transcripts(self._sessions, driver, input, now, tally, clock)
        except LookupError:
            park = "tenant_unavailable"
        except AuthError as exc:  # refused while opening the connection (a refresh the provider turned down)
            tally.stop = exc
        await self._record_failures(input, now, tally)
        if isinstance(tally.stop, AuthError):
            park = "auth_error"
        wait = None
        if isinstance(tally.stop, RateLimitedError):
            wait = max(tally.stop.retry_after or input.first_backoff, timedelta(seconds=1))
        async with self._sessions() as session, session.begin():
            opened = await incidents.escalate_tenant(session, input.tenant_id, now - input.escalate_after)
            states, earliest = await content.backlog(session, input.tenant_id, clock())
            more = park is None and await content.any_due(session, input.tenant_id, clock())
        backlog = sum(states.values())
        activity.logger.info("mirror pass", extra={"tenant": str(input.tenant_id), "synced": tally.synced,
                                                   "failed": tally.failed, "backlog": backlog})
        return MirrorPassResult(synced=tally.synced, failed=tally.failed, more=more, backlog=backlog,
                                state=overall_state(states, park=park, more=more), next_attempt_at=earliest,
                                park=park, wait=wait, incidents_opened=opened)

    def _pass_clock(self, input: MirrorPassInput) -> Clock:
        """Now, but never earlier than the workflow's `as_of`: retry times and synced_at agree with its timers."""
        return lambda: max(self._clock(), input.as_of) if input.as_of is not None else self._clock()

    async def _records(self, driver: BaseDriver, mapping: crm_plan.TenantMapping, table: str, input: MirrorPassInput,
                       clock: Clock, tally: Tally) -> None:
        tenant, now = input.tenant_id, clock()
        async with self._sessions() as session:
            rows = await content.due_rows(session, table, tenant, now, input.batch_size)
            related = {row.id: await _related(session, tenant, row) for row in rows}
            held = await held_rows(session, tenant, table, [row.id for row in rows])
        jobs: dict[str, Any] = {}
        plans: list[RecordJob] = []
        for row in rows:
            if row.id in held:  # an erasure runs for this subject: write nothing for it
                tally.failures.append((table, row, LookupError(ERASURE_HOLD)))
                continue
            try:
                plan = _plan(table, row, related[row.id], mapping, driver)
            except (crm_plan.UnmappedFieldsError, crm_plan.DependencyPendingError) as exc:
                tally.failures.append((table, row, exc))
                continue
            except Exception as exc:  # a row the planner cannot handle (a bug) must not hold up the tenant's others
                activity.logger.warning("mirror cannot plan a row", extra={"table": table, "row": str(row.id),
                                                                           "error": type(exc).__name__})
                tally.failures.append((table, row, exc))
                continue
            key = row_key(table, row.id)
            jobs[key] = row
            plans.append(RecordJob(key, plan, row.updated_at))
        if not plans:
            return
        results = await execute_many(self._sessions, driver, tenant, plans)
        written: list[tuple[Any, str]] = []
        for key, row in jobs.items():
            outcome = results[key]
            if isinstance(outcome, str):
                written.append((row, outcome))
                continue
            tally.failures.append((table, row, outcome))
            if isinstance(outcome, ACCOUNT_WIDE) and tally.stop is None:
                tally.stop = outcome
        await self._mark_synced(table, written, input, clock(), tally)

    async def _mark_synced(self, table: str, written: list[tuple[Any, str]], input: MirrorPassInput,
                           synced_at: datetime, tally: Tally) -> None:
        if not written:
            return
        window = input.retention.get(table) or content.retention(table)
        async with self._sessions() as session, session.begin():
            marked = await content.mark_synced_many(session, table, written, synced_at, window)
            await content.wake_dependents(session, table, marked)
        tally.synced += len(marked)  # the others changed meanwhile: due again, written again next pass

    async def _record_failures(self, input: MirrorPassInput, now: datetime, tally: Tally) -> None:
        """Each failed row: its error code, who fixes it, when to try again. Rate-limited rows are untouched (no
        CRM attempt was spent on them; the whole mirror waits instead)."""
        if not tally.failures:
            return
        async with self._sessions() as session, session.begin():
            for table, row, exc in tally.failures:
                if isinstance(exc, RateLimitedError):
                    continue
                state, retry_at, attempted = retry_plan(exc, row.sync_attempts, now, input)
                tally.failed += attempted
                await content.record_failure(session, table, [row.id], failure_label(exc), state=state,
                                             retry_at=retry_at, attempted=attempted)


def overall_state(states: dict[str, int], *, park: str | None, more: bool) -> str:
    """The tenant's rows as one state, in the rows' own vocabulary (what an operator should look at first)."""
    if park is not None:
        return SyncState.BLOCKED.value
    if more:
        return SyncState.PENDING.value
    for state in (SyncState.RETRYING, SyncState.BLOCKED, SyncState.PENDING):
        if states.get(state.value):
            return state.value
    return SyncState.SYNCED.value


def failure_label(exc: BaseException) -> str:
    if isinstance(exc, LookupError) and str(exc) == ERASURE_HOLD:
        return ERASURE_HOLD
    return error_label(exc)


def retry_plan(exc: BaseException, attempts: int, now: datetime, input: MirrorPassInput
               ) -> tuple[SyncState, datetime | None, bool]:
    """(state, retry_at, counts as an attempt) for a row whose write failed with `exc`."""
    if isinstance(exc, crm_plan.DependencyPendingError):  # woken as soon as its dependency syncs
        return SyncState.PENDING, now + input.max_backoff, False
    if isinstance(exc, LookupError):  # held by an erasure (then scrubbed), or the tenant is gone
        return SyncState.PENDING, now + input.blocked_poll, False
    if isinstance(exc, AuthError):  # the mirror parks until the connection is fixed, then tries it at once
        return SyncState.BLOCKED, None, True
    if isinstance(exc, DriverError) and exc.retryable:
        backoff = min(input.max_backoff, input.first_backoff * (2 ** min(attempts, 20)))
        return SyncState.RETRYING, now + max(backoff, exc.retry_after or timedelta(0)), True
    return SyncState.BLOCKED, now + input.blocked_poll, True


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


def _plan(table: str, row: Any, related: Related, mapping: crm_plan.TenantMapping, driver: BaseDriver
          ) -> WritePlan:
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
