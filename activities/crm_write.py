"""CRM writes with an exactly-once effect, and the translation of failures into Temporal's terms.

One ledger entry per row's CRM object (scope `crm_object:<provider>`, key `<table>:<row id>`), recording which
version of the row the CRM holds: its content fingerprint and the row's `updated_at`.
- Exactly one CRM record: a `pending` entry is written *before* the first create, and the driver's create is
  the provider's natural upsert on the row's key, so when a worker dies after the CRM created the record but
  before the ledger says `done`, the retry finds that record instead of making a second one (and, when the
  row changed meanwhile, the driver names it in a ConflictError and the newer version is written there).
- This version, not an older one: a `done` entry answers without a CRM call only when it recorded exactly this
  content; any other version is written as a partial update of the record the row already has.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.crm_plan import DependencyPendingError, UnmappedFieldsError, WritePlan
from drivers.base import BaseDriver, CrmObject
from drivers.errors import ConflictError, DriverError
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
        return exc.label  # unmapped_fields | invalid_field_values (drivers/mapping.py)
    if isinstance(exc, LookupError):
        return "tenant_unavailable"
    return type(exc).__name__


def as_application_error(exc: BaseException) -> ApplicationError:
    """The activity's failure: typed, retryable as the driver says, with the server's delay when it gave one."""
    if isinstance(exc, DriverError):
        # An expected CRM failure (the row and incident say what happened): benign, so the SDK logs it at
        # DEBUG without a traceback; tracebacks are for bugs.
        return ApplicationError(error_label(exc), type=type(exc).__name__, non_retryable=not exc.retryable,
                                next_retry_delay=exc.retry_after, category=ApplicationErrorCategory.BENIGN)
    if isinstance(exc, UnmappedFieldsError):
        # Field names are schema, not customer content: the operator needs them to fix the mapping.
        return ApplicationError(str(exc), type="UnmappedFieldsError", non_retryable=True)
    if isinstance(exc, LookupError):
        return ApplicationError("tenant unknown or disabled", type="TenantUnavailable", non_retryable=True)
    raise TypeError(f"no activity error for {type(exc).__name__}")


def row_key(table: str, row_id: uuid.UUID) -> str:
    """The idempotency key of one row's CRM object: the row's own, never a key several rows share."""
    return f"{table}:{row_id}"


def _scope(driver: BaseDriver) -> str:
    return f"crm_object:{driver.slug}"


async def _entry(sessions: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID, scope: str, key: str
                 ) -> IdempotencyRecord | None:
    async with sessions() as session:
        row = await session.execute(select(IdempotencyRecord).where(
            IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.scope == scope, IdempotencyRecord.key == key))
        return row.scalar_one_or_none()


async def _begin(sessions: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID, scope: str, key: str,
                 fingerprint: str) -> None:
    """A `pending` entry before the first create: the create may land in the CRM even if we never hear back."""
    async with sessions() as session, session.begin():
        try:
            async with session.begin_nested():
                await session.execute(insert(IdempotencyRecord).values(
                    id=uuid.uuid4(), tenant_id=tenant_id, scope=scope, key=key, fingerprint=fingerprint,
                    status="pending", created_at=utcnow()))
        except IntegrityError:  # an earlier attempt wrote it; the provider's upsert key finds its record
            pass


async def _written(sessions: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID, scope: str, key: str, *,
                   fingerprint: str, external_id: str, record_url: str | None, row_version: datetime | None) -> None:
    """Record that the CRM now holds this version (fingerprint + row version) under `external_id`."""
    values: dict[str, Any] = {"status": "done", "fingerprint": fingerprint, "external_id": external_id,
                              "record_url": record_url, "row_updated_at": row_version, "completed_at": utcnow()}
    async with sessions() as session, session.begin():
        updated = await session.execute(update(IdempotencyRecord).where(
            IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.scope == scope,
            IdempotencyRecord.key == key).values(**values).execution_options(synchronize_session=False))
        if not getattr(updated, "rowcount", 0):  # an update of a record found by lookup: first entry for the row
            session.add(IdempotencyRecord(id=uuid.uuid4(), tenant_id=tenant_id, scope=scope, key=key,
                                          created_at=utcnow(), **values))


async def note_once(sessions: async_sessionmaker[AsyncSession], driver: BaseDriver, tenant_id: uuid.UUID,
                    customer_external_id: str, text: str, key: str) -> str:
    """A new note on the customer, at most once per key (a transcript's note, created with its header)."""
    scope, fingerprint = _scope(driver), request_fingerprint(CrmObject.NOTE, {"note": text})
    entry = await _entry(sessions, tenant_id, scope, key)
    if entry is not None and entry.status == "done" and entry.external_id:
        return entry.external_id
    await _begin(sessions, tenant_id, scope, key, fingerprint)
    result = await driver.append_note(customer_external_id, None, text, batch_key=key)
    await _written(sessions, tenant_id, scope, key, fingerprint=fingerprint, external_id=result.external_id,
                   record_url=result.record_url, row_version=None)
    return result.external_id


async def execute(sessions: async_sessionmaker[AsyncSession], driver: BaseDriver, tenant_id: uuid.UUID,
                  plan: WritePlan, key: str, row_version: datetime) -> str:
    """Make the CRM hold this version of the row; the CRM id of the record that holds it.

    Whatever the ledger says about an earlier create, a version it has not recorded is written (as a partial
    update of the record the row already has), so a row is never marked synced on an older version's write.
    """
    scope = _scope(driver)
    fingerprint = request_fingerprint(plan.object, {"fields": plan.fields, "note": plan.note_text})
    entry = await _entry(sessions, tenant_id, scope, key)
    known = entry.external_id if entry is not None and entry.status == "done" else None
    existing = plan.existing_id or known
    if existing is not None and existing == known and entry is not None and entry.fingerprint == fingerprint:
        url = entry.record_url  # this content is already there (a retry after the write): nothing to send
    elif plan.note_text is not None:
        existing, url = await _write_note(sessions, driver, tenant_id, plan, key, existing, fingerprint), None
    else:
        existing, url = await _write_record(sessions, driver, tenant_id, plan, key, existing, fingerprint)
    await _written(sessions, tenant_id, scope, key, fingerprint=fingerprint, external_id=existing, record_url=url,
                   row_version=row_version)
    return existing


async def _write_record(sessions: async_sessionmaker[AsyncSession], driver: BaseDriver, tenant_id: uuid.UUID,
                        plan: WritePlan, key: str, existing: str | None, fingerprint: str) -> tuple[str, str | None]:
    if existing is None and plan.lookup:
        # The CRM is the system of record: a caller it already knows is updated, not duplicated.
        found = await driver.lookup_customer(**plan.lookup)
        existing = found.external_id if found is not None else None
    if existing is None:
        await _begin(sessions, tenant_id, _scope(driver), key, fingerprint)
        try:
            created = await driver.create_record(plan.object, plan.fields, key)
            return created.external_id, created.record_url
        except ConflictError as exc:  # an earlier attempt created it with an older version of the row
            if exc.existing_id is None:
                raise
            existing = exc.existing_id
    if plan.fields:
        await driver.update_record(plan.object, existing, plan.fields)
    return existing, None


async def _write_note(sessions: async_sessionmaker[AsyncSession], driver: BaseDriver, tenant_id: uuid.UUID,
                      plan: WritePlan, key: str, existing: str | None, fingerprint: str) -> str:
    """A row mirrored as a note (an appointment without an appointment object): created once under the row's
    key, each later version appended once under a key of its own content."""
    customer, text = plan.customer_external_id or "", plan.note_text or ""
    if existing is None:
        await _begin(sessions, tenant_id, _scope(driver), key, fingerprint)
        try:
            return (await driver.append_note(customer, None, text, batch_key=key)).external_id
        except ConflictError as exc:
            if exc.existing_id is None:
                raise
            existing = exc.existing_id
    await driver.append_note(customer, existing, text, batch_key=f"{key}:{fingerprint[:16]}")
    return existing
