"""CRM writes with an exactly-once effect, and the translation of failures into Temporal's terms.

Exactly-once: a create first consults the local idempotency ledger (tenant, scope, key). A `done` entry
answers without calling the CRM; otherwise a `pending` entry is written *before* the call, and the driver's
create is the provider's natural upsert on the same key, so when a worker dies after the CRM created the
record but before the ledger says `done`, the retry finds that record instead of making a second one.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.crm_plan import DependencyPendingError, UnmappedFieldsError, WritePlan
from drivers.base import BaseDriver, CrmObject
from drivers.errors import DriverError
from drivers.idempotency import request_fingerprint
from store.base import utcnow
from store.models import IdempotencyRecord

# Failures a retry cannot fix without a person (or a reconnect): the workflow waits for a redrive instead.
BLOCKING = frozenset({"AuthError", "InvalidRequestError", "ConflictError", "NotFoundError", "UnmappedFieldsError",
                      "TenantUnavailable", "DeleteUnsupportedError"})


def error_label(exc: BaseException) -> str:
    """What we store about a failure: its type and status code, never a message (it may echo content)."""
    if isinstance(exc, DriverError):
        return f"{exc.code}:{exc.status_code}" if exc.status_code is not None else exc.code
    if isinstance(exc, DependencyPendingError):
        return f"dependency_pending:{exc.table}"
    if isinstance(exc, UnmappedFieldsError):
        return "unmapped_fields"
    if isinstance(exc, LookupError):
        return "tenant_unavailable"
    return type(exc).__name__


def as_application_error(exc: BaseException) -> ApplicationError:
    """The activity's failure: typed, retryable as the driver says, with the server's delay when it gave one."""
    if isinstance(exc, DriverError):
        return ApplicationError(error_label(exc), type=type(exc).__name__, non_retryable=not exc.retryable,
                                next_retry_delay=exc.retry_after)
    if isinstance(exc, DependencyPendingError):
        return ApplicationError(error_label(exc), type="DependencyPending", category=ApplicationErrorCategory.BENIGN)
    if isinstance(exc, UnmappedFieldsError):
        # Field names are schema, not customer content: the operator needs them to fix the mapping.
        return ApplicationError(str(exc), type="UnmappedFieldsError", non_retryable=True)
    if isinstance(exc, LookupError):
        return ApplicationError("tenant unknown or disabled", type="TenantUnavailable", non_retryable=True)
    raise TypeError(f"no activity error for {type(exc).__name__}")


async def _ledger(session: AsyncSession, tenant_id: uuid.UUID, scope: str, key: str) -> IdempotencyRecord | None:
    row = await session.execute(select(IdempotencyRecord).where(
        IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.scope == scope, IdempotencyRecord.key == key))
    return row.scalar_one_or_none()


async def _claim(sessions: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID, scope: str, key: str,
                 fingerprint: str) -> str | None:
    """The external id when the ledger already has it; else a pending entry exists when this returns."""
    async with sessions() as session, session.begin():
        entry = await _ledger(session, tenant_id, scope, key)
        if entry is not None:
            return entry.external_id if entry.status == "done" else None
        try:
            async with session.begin_nested():
                await session.execute(insert(IdempotencyRecord).values(
                    id=uuid.uuid4(), tenant_id=tenant_id, scope=scope, key=key, fingerprint=fingerprint,
                    status="pending", created_at=utcnow()))
        except IntegrityError:  # a concurrent attempt wrote it first; its outcome is read on the next retry
            pass
    return None


async def _complete(sessions: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID, scope: str, key: str,
                    external_id: str, record_url: str | None) -> None:
    async with sessions() as session, session.begin():
        await session.execute(update(IdempotencyRecord).where(
            IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.scope == scope,
            IdempotencyRecord.key == key).values(status="done", external_id=external_id, record_url=record_url,
                                                 completed_at=utcnow()))


async def create_once(sessions: async_sessionmaker[AsyncSession], driver: BaseDriver, tenant_id: uuid.UUID,
                      object: CrmObject, fields: dict[str, Any], key: str) -> str:
    scope = f"crm_create:{driver.slug}"
    known = await _claim(sessions, tenant_id, scope, key, request_fingerprint(object, fields))
    if known is not None:
        return known
    result = await driver.create_record(object, fields, key)
    await _complete(sessions, tenant_id, scope, key, result.external_id, result.record_url)
    return result.external_id


async def note_once(sessions: async_sessionmaker[AsyncSession], driver: BaseDriver, tenant_id: uuid.UUID,
                    customer_external_id: str, text: str, key: str) -> str:
    """A new note on the customer, at most once per key (the transcript header, an appointment note)."""
    scope = f"crm_note:{driver.slug}"
    known = await _claim(sessions, tenant_id, scope, key,
                         request_fingerprint(CrmObject.NOTE, {"customer": customer_external_id, "text": text}))
    if known is not None:
        return known
    result = await driver.append_note(customer_external_id, None, text, batch_key=key)
    await _complete(sessions, tenant_id, scope, key, result.external_id, result.record_url)
    return result.external_id


async def execute(sessions: async_sessionmaker[AsyncSession], driver: BaseDriver, tenant_id: uuid.UUID,
                  plan: WritePlan, key: str) -> str:
    """Carry out one write plan; the CRM id of the record that now holds the row."""
    if plan.note_text is not None:
        customer = plan.customer_external_id or ""
        if plan.existing_id is None:
            return await note_once(sessions, driver, tenant_id, customer, plan.note_text, key)
        await driver.append_note(customer, plan.existing_id, plan.note_text, batch_key=key)
        return plan.existing_id
    existing = plan.existing_id
    if existing is None and plan.lookup:
        # The CRM is the system of record: a caller it already knows is updated, not duplicated.
        found = await driver.lookup_customer(**plan.lookup)
        existing = found.external_id if found is not None else None
    if existing is not None:
        if plan.fields:
            await driver.update_record(plan.object, existing, plan.fields)
        return existing
    return await create_once(sessions, driver, tenant_id, plan.object, plan.fields, key)
