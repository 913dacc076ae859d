"""Activities of the forget (right to erasure) workflow: hold, stop lifecycles, find, delete, scrub, finish.

Each one is idempotent: state lives in `erasure_requests` / `erasure_outcomes` / `erasure_holds`, so a retry
or a replay after a worker crash repeats nothing that already happened. Errors leave here as
`ApplicationError`s whose message and type are error *codes*: a database or driver exception text could
echo identifiers, and Temporal would keep it in history.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.service import RPCError, RPCStatusCode

from activities.contained import contained
from activities.erasure_discovery import (
    OBJECT_OF_TABLE,
    crm_object_for,
    dedupe,
    lookup_customers,
    search_related,
)
from activities.erasure_types import (
    DeleteTargetInput,
    DeleteTargetResult,
    DiscoverResult,
    ErasureStepInput,
    FinishResult,
    HoldResult,
    RecordFailureInput,
    ScrubResult,
    StopLifecyclesInput,
    StopLifecyclesResult,
    TargetsInput,
    TargetsResult,
)
from drivers.base import CrmObject
from drivers.errors import DeleteUnsupportedError, DriverError, NotFoundError
from store import erasure_requests as requests
from store import phone_index
from store.erasure import crm_ids_of_rows, held_row_ids, hold_rows, resolve_subject_rows, scrub_rows
from store.models import ErasureOutcome, Tenant
from store.session import checkpoint_after_erasure
from vault.connections import Actor, DriverProvider

TERMINAL = (requests.DELETED, requests.ARCHIVED, requests.NOT_FOUND, requests.DIVERGENT)


def lifecycle_workflow_ids(tenant_id: uuid.UUID, rows: Mapping[str, Sequence[uuid.UUID]]) -> list[str]:
    """Workflows to cancel before the erasure: none. Rows have no workflows of their own any more, and the tenant's
    mirror (`mirror:{tenant}`) serves every other subject too; the hold is what stops mirroring the subject's rows
    (its guard runs in every mirror pass). Kept so running erasures replay (their step still runs, with no ids)."""
    return []


def _driver_failure(exc: DriverError) -> ApplicationError:
    # Expected (a CRM down, throttling): benign, so it is one log line (see `contained`), not a traceback.
    return ApplicationError(f"CRM call failed: {exc.code}", type=exc.code, non_retryable=not exc.retryable,
                            next_retry_delay=exc.retry_after, category=ApplicationErrorCategory.BENIGN)


class ErasureActivities:
    """The erasure steps, bound to the database, a driver provider and the subject-hash secret.

    Args:
        sessions: session factory of the service database.
        drivers: opens a ready driver for a tenant (the vault in production, a sandbox in tests).
        subject_hash_key: `settings.subject_hash_key`; the identifiers' sealing key derives from it.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], drivers: DriverProvider,
                 subject_hash_key: str) -> None:
        self._sessions = sessions
        self._drivers = drivers
        self._key = requests.sealing_key(subject_hash_key)
        self._hash_key = subject_hash_key  # the phone index's per-tenant keys derive from it

    def all(self) -> list[Callable[..., Any]]:
        """Every erasure activity, for the worker's registration."""
        return [self.erasure_hold, self.erasure_stop_lifecycles, self.erasure_discover, self.erasure_targets,
                self.erasure_delete_target, self.erasure_record_failure, self.erasure_scrub, self.erasure_finish]

    def _actor(self, request_id: uuid.UUID) -> Actor:
        return Actor(type="system", id="forget-workflow", purpose="right to erasure", request_id=str(request_id))

    @activity.defn
    @contained
    async def erasure_hold(self, input: ErasureStepInput) -> HoldResult:
        """Hold the subject's rows (the mirror guard now skips them) and record the CRM ids they carry."""
        async with self._sessions() as session, session.begin():
            request = await requests.load_request(session, input.request_id, for_update=True)
            subject = requests.open_subject(self._key, request)
            held = await held_row_ids(session, request.id)
            rows = await resolve_subject_rows(session, input.tenant_id, subject, held)
            new_holds = await hold_rows(session, request.id, input.tenant_id, rows)
            known = [(OBJECT_OF_TABLE[table].value, external_id, "local")
                     for table, external_id in await crm_ids_of_rows(session, input.tenant_id, rows)
                     if table in OBJECT_OF_TABLE]
            provider = await _provider_of(session, input.tenant_id)
            new_targets = await requests.add_targets(session, request.id, provider, dedupe(known))
            requests.audit(session, request, "erasure.hold", details={
                "rows_by_table": {table: len(ids) for table, ids in rows.items()},
                "new_holds": new_holds, "crm_targets_from_local_ids": new_targets})
        return HoldResult(rows_held=sum(len(ids) for ids in rows.values()), crm_targets=new_targets,
                          lifecycle_workflow_ids=lifecycle_workflow_ids(input.tenant_id, rows))

    @activity.defn
    @contained
    async def erasure_stop_lifecycles(self, input: StopLifecyclesInput) -> StopLifecyclesResult:
        """Cancel the record lifecycles of held rows; one that already ended (or never started) is fine."""
        client = activity.client()
        cancelled = not_running = 0
        for workflow_id in input.workflow_ids:
            activity.heartbeat(cancelled + not_running)
            try:
                await client.get_workflow_handle(workflow_id).cancel()
                cancelled += 1
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise ApplicationError("cancel failed", type=f"rpc_{exc.status.name.lower()}") from None
                not_running += 1
        async with self._sessions() as session, session.begin():
            request = await requests.load_request(session, input.request_id)
            requests.audit(session, request, "erasure.lifecycles_stopped",
                           details={"cancelled": cancelled, "not_running": not_running})
        return StopLifecyclesResult(cancelled=cancelled, not_running=not_running)

    @activity.defn
    @contained
    async def erasure_discover(self, input: ErasureStepInput) -> DiscoverResult:
        """Look the subject up in the CRM and record what qualifies as a pending target."""
        async with self._sessions() as session:
            request = await requests.load_request(session, input.request_id)
            subject = requests.open_subject(self._key, request)
            provider = await _provider_of(session, input.tenant_id)
        if subject is None or subject.is_empty():
            return DiscoverResult(new_targets=0)  # identifiers already cleared: nothing left to look up
        try:
            async with self._drivers.open(input.tenant_id, self._actor(request.id)) as driver:
                found = await lookup_customers(driver, subject) + await search_related(driver, subject)
        except DriverError as exc:
            raise _driver_failure(exc) from None
        except LookupError:
            raise ApplicationError("tenant has no usable CRM", type="tenant_unavailable",
                                   non_retryable=True) from None
        async with self._sessions() as session, session.begin():
            request = await requests.load_request(session, input.request_id)
            new = await requests.add_targets(session, request.id, provider, dedupe(found))
            requests.audit(session, request, "erasure.crm_discovered",
                           details={"found": len(found), "new_targets": new})
        return DiscoverResult(new_targets=new)

    @activity.defn
    @contained
    async def erasure_targets(self, input: TargetsInput) -> TargetsResult:
        wanted = [requests.PENDING, requests.FAILED] if input.include_failed else [requests.PENDING]
        async with self._sessions() as session:
            return TargetsResult(outcome_ids=await requests.target_ids(session, input.request_id, wanted))

    @activity.defn
    @contained
    async def erasure_delete_target(self, input: DeleteTargetInput) -> DeleteTargetResult:
        """Delete one CRM record (hard where the driver can) and record the outcome with its audit row."""
        async with self._sessions() as session:
            outcome = await _outcome(session, input.request_id, input.outcome_id)
        if outcome.outcome in TERMINAL:  # settled by an earlier attempt whose completion was lost
            return DeleteTargetResult(outcome=outcome.outcome)
        hard: bool | None = None
        error: str | None = None
        purge_days: int | None = None
        try:
            async with self._drivers.open(input.tenant_id, self._actor(input.request_id)) as driver:
                obj = crm_object_for(CrmObject(outcome.object), driver.supported_objects)
                deleted = await driver.delete_record(obj, outcome.external_id, hard=driver.hard_delete_supported)
            result, hard, purge_days = requests.DELETED, deleted.hard_deleted, deleted.purge_delay_days
        except NotFoundError:
            result = requests.NOT_FOUND  # already gone: a re-run must not fail on it
        except DeleteUnsupportedError:
            result = requests.DIVERGENT
        except DriverError as exc:
            if exc.retryable:
                raise _driver_failure(exc) from None
            result, error = requests.FAILED, exc.code
        except LookupError:
            result, error = requests.FAILED, "tenant_unavailable"
        async with self._sessions() as session, session.begin():
            request = await requests.load_request(session, input.request_id)
            outcome = await _outcome(session, input.request_id, input.outcome_id)
            await requests.settle(session, request, outcome, result, hard_deleted=hard, error=error,
                                  purge_delay_days=purge_days)
            result = outcome.outcome  # a soft delete settles as `archived`
        return DeleteTargetResult(outcome=result)

    @activity.defn
    @contained
    async def erasure_record_failure(self, input: RecordFailureInput) -> None:
        """Record a step that failed after its retries: a target's outcome, or the request's CRM lookup."""
        async with self._sessions() as session, session.begin():
            request = await requests.load_request(session, input.request_id)
            if input.outcome_id is None:
                request.error = f"{input.step}:{input.error}"[:64]
                requests.audit(session, request, "erasure.crm_lookup_failed", details={"error": input.error})
                return
            outcome = await _outcome(session, input.request_id, input.outcome_id)
            if outcome.outcome not in TERMINAL:
                await requests.settle(session, request, outcome, requests.FAILED, error=input.error)

    @activity.defn
    @contained
    async def erasure_scrub(self, input: ErasureStepInput) -> ScrubResult:
        """Delete every local class-(c) row of the subject, synced or not, holding late arrivals first."""
        async with self._sessions() as session, session.begin():
            request = await requests.load_request(session, input.request_id, for_update=True)
            subject = requests.open_subject(self._key, request)
            rows = await resolve_subject_rows(session, input.tenant_id, subject,
                                              await held_row_ids(session, request.id))
            await hold_rows(session, request.id, input.tenant_id, rows)
            counts = await scrub_rows(session, input.tenant_id, rows)
            # The phone index is derived from the subject's number: drop it by hash and by every CRM id found.
            indexed = await phone_index.forget(
                session, input.tenant_id,
                phone_hashes=[phone_index.phone_hash(self._hash_key, input.tenant_id, subject.phone)]
                if subject is not None and subject.phone else [],
                external_ids=await requests.target_external_ids(session, request.id)
                + ([subject.external_id] if subject is not None and subject.external_id else []))
            if indexed:
                counts[phone_index.PhoneIndexEntry.__tablename__] = indexed
            request.local_rows_scrubbed += sum(counts.values())
            requests.audit(session, request, "erasure.local_scrub", details={"deleted_by_table": counts})
        async with self._sessions() as session:  # after the commit: the WAL must not keep the erased pages
            if not await checkpoint_after_erasure(session):
                raise ApplicationError("the SQLite checkpoint was blocked by a reader", type="checkpoint_busy")
        return ScrubResult(rows_deleted=sum(counts.values()))

    @activity.defn
    @contained
    async def erasure_finish(self, input: ErasureStepInput) -> FinishResult:
        async with self._sessions() as session, session.begin():
            request = await requests.load_request(session, input.request_id, for_update=True)
            status, counts = await requests.finish(session, request)
            scrubbed = request.local_rows_scrubbed
        return FinishResult(status=status, outcomes=counts, local_rows_scrubbed=scrubbed)


async def _provider_of(session: AsyncSession, tenant_id: uuid.UUID) -> str:
    provider = (await session.execute(select(Tenant.provider).where(Tenant.id == tenant_id))).scalar()
    return provider or "unknown"


async def _outcome(session: AsyncSession, request_id: uuid.UUID, outcome_id: uuid.UUID) -> ErasureOutcome:
    row = (await session.execute(select(ErasureOutcome).where(
        ErasureOutcome.id == outcome_id, ErasureOutcome.request_id == request_id))).scalar()
    if row is None:
        raise ApplicationError("no such erasure target", type="unknown_target", non_retryable=True)
    return row
