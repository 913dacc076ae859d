"""CRM writes with an exactly-once effect, and the translation of failures into Temporal's terms.

One ledger entry per row's CRM object (scope `crm_object:<provider>`, key `<table>:<row id>`), recording which
version of the row the CRM holds: its content fingerprint and the row's `updated_at`.
- Exactly one CRM record: a `pending` entry is written *before* the first create, and the driver's create is
  the provider's natural upsert on the row's key, so when a worker dies after the CRM created the record but
  before the ledger says `done`, the retry finds that record instead of making a second one (and, when the
  row changed meanwhile, the driver names it in a ConflictError and the newer version is written there).
- This version, not an older one: a `done` entry answers without a CRM call only when it recorded exactly this
  content; any other version is written as a partial update of the record the row already has (in batches:
  `execute_many`, through `upsert_many`; the rules hold row by row).
- The CRM's own record first: a customer row without a record yet is matched to the caller the CRM already knows
  (by phone or email) before it is written, a batch at a time (`match_customers`), so it is updated, not duplicated.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.crm_plan import DependencyPendingError, UnmappedFieldsError, WritePlan
from activities.tally import each
from drivers.base import BaseDriver, CrmObject
from drivers.errors import AuthError, ConflictError, DriverError, RateLimitedError
from drivers.idempotency import request_fingerprint
from drivers.models import MatchItem, UpsertItem
from store.base import utcnow
from store.models import IdempotencyRecord


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


def _ledger_insert(session: AsyncSession) -> Any:
    """INSERT into the ledger in the database's own dialect (for ON CONFLICT)."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(IdempotencyRecord)


async def _record_many(session: AsyncSession, tenant_id: uuid.UUID, scope: str,
                       written: Sequence[tuple[str, str, str, str | None, datetime | None]]) -> None:
    """Record that the CRM now holds these versions — (key, fingerprint, external id, url, row version) — in one
    statement: an entry per key, created (an update of a record found by lookup) or brought up to date."""
    if not written:
        return
    now = utcnow()
    rows = [{"id": uuid.uuid4(), "tenant_id": tenant_id, "scope": scope, "key": key, "fingerprint": fingerprint,
             "status": "done", "external_id": external_id, "record_url": url, "row_updated_at": version,
             "completed_at": now, "created_at": now}
            for key, fingerprint, external_id, url, version in {w[0]: w for w in written}.values()]
    insert_ = _ledger_insert(session).values(rows)
    await session.execute(insert_.on_conflict_do_update(
        index_elements=["tenant_id", "scope", "key"],
        set_={name: insert_.excluded[name] for name in ("status", "fingerprint", "external_id", "record_url",
                                                        "row_updated_at", "completed_at")}))


async def notes_once(sessions: async_sessionmaker[AsyncSession], driver: BaseDriver, tenant_id: uuid.UUID,
                     notes: Sequence[tuple[str, str, str]],
                     remember: Callable[[AsyncSession, dict[str, str]], Awaitable[None]]
                     ) -> dict[str, str | DriverError]:
    """New notes on customers, each at most once per key (a transcript's note, created with its header): per key
    (`notes` holds key, customer CRM id, text), the note's CRM id or the error that failed only it. `remember`
    keeps the ids in the same transaction as the ledger, so a later failure cannot lose which note is whose."""
    scope = _scope(driver)
    results: dict[str, str | DriverError] = {}
    entries = await _entries(sessions, tenant_id, scope, [key for key, _, _ in notes])
    fingerprints = {key: request_fingerprint(CrmObject.NOTE, {"note": text}) for key, _, text in notes}
    created: dict[str, str] = {}
    for key, _, _ in notes:
        entry = entries.get(key)
        if entry is not None and entry.status == "done" and entry.external_id:
            results[key] = created[key] = entry.external_id
    todo = [note for note in notes if note[0] not in results]
    await _begin_many(sessions, tenant_id, scope, [(key, fingerprints[key]) for key, _, _ in todo])
    stop: list[DriverError] = []

    async def create(note: tuple[str, str, str]) -> None:
        key, customer, text = note
        try:
            if stop:
                raise stop[0]
            results[key] = created[key] = (await driver.append_note(customer, None, text, batch_key=key)).external_id
        except DriverError as exc:
            results[key] = exc
            if isinstance(exc, ACCOUNT_WIDE):
                stop.append(exc)

    await each(todo, create)
    async with sessions() as session, session.begin():
        await _record_many(session, tenant_id, scope, [(key, fingerprints[key], created[key], None, None)
                                                       for key, _, _ in todo if key in created])
        await remember(session, created)
    return results


async def _write_note(sessions: async_sessionmaker[AsyncSession], driver: BaseDriver, tenant_id: uuid.UUID,
                      plan: WritePlan, key: str, existing: str | None, fingerprint: str) -> str:
    """A row mirrored as a note (an appointment without an appointment object): created once under the row's
    key, each later version appended once under a key of its own content."""
    customer, text = plan.customer_external_id or "", plan.note_text or ""
    if existing is None:
        await _begin_many(sessions, tenant_id, _scope(driver), [(key, fingerprint)])
        try:
            return (await driver.append_note(customer, None, text, batch_key=key)).external_id
        except ConflictError as exc:
            if exc.existing_id is None:
                raise
            existing = exc.existing_id
    await driver.append_note(customer, existing, text, batch_key=f"{key}:{fingerprint[:16]}")
    return existing


# Failures that hit the whole account, not one record: after one, the rest of a batch is not sent.
ACCOUNT_WIDE = (RateLimitedError, AuthError)


@dataclass(frozen=True)
class RecordJob:
    """One row's CRM write in a batch (in-process only: the plan holds customer fields)."""

    key: str
    plan: WritePlan
    row_version: datetime


@dataclass
class _Pending:
    job: RecordJob
    fingerprint: str
    existing: str | None


async def execute_many(sessions: async_sessionmaker[AsyncSession], driver: BaseDriver, tenant_id: uuid.UUID,
                       jobs: Sequence[RecordJob]) -> dict[str, str | BaseException]:
    """`execute` for a batch of rows: per key, the CRM id of the record that now holds that version, or the
    error that failed only that row. Creates and updates go through `driver.upsert_many` (the provider's batch
    API where it has one), in chunks of `driver.batch_size`; the ledger rules are `execute`'s, row by row."""
    scope = _scope(driver)
    results: dict[str, str | BaseException] = {}
    entries = await _entries(sessions, tenant_id, scope, [job.key for job in jobs])
    known: list[tuple[RecordJob, str, str, str | None]] = []  # job, fingerprint, external id, url
    todo: list[_Pending] = []
    for job in jobs:
        plan = job.plan
        fingerprint = request_fingerprint(plan.object, {"fields": plan.fields, "note": plan.note_text})
        entry = entries.get(job.key)
        done = entry.external_id if entry is not None and entry.status == "done" else None
        existing = plan.existing_id or done
        if existing is not None and existing == done and entry is not None and entry.fingerprint == fingerprint:
            known.append((job, fingerprint, existing, entry.record_url))  # already there: nothing to send
        else:
            todo.append(_Pending(job, fingerprint, existing))
    stop: list[BaseException] = []  # an account-wide failure: the calls not yet made are not made

    async def note(pending: _Pending) -> None:  # rows mirrored as notes: one by one
        try:
            if stop:
                raise stop[0]
            external = await _write_note(sessions, driver, tenant_id, pending.job.plan, pending.job.key,
                                         pending.existing, pending.fingerprint)
            known.append((pending.job, pending.fingerprint, external, None))
        except DriverError as exc:
            results[pending.job.key] = exc
            if isinstance(exc, ACCOUNT_WIDE):
                stop.append(exc)

    await each([p for p in todo if p.job.plan.note_text is not None], note)
    records = [p for p in todo if p.job.plan.note_text is None]

    async def match(chunk: list[_Pending]) -> None:  # the CRM is the system of record: a caller it knows is updated
        try:
            if stop:
                raise stop[0]
            found = await driver.match_customers([MatchItem(p.job.key, phone=p.job.plan.lookup.get("phone"),
                                                            email=p.job.plan.lookup.get("email")) for p in chunk])
        except DriverError as exc:  # the call failed: so does its chunk (one row, for drivers matching one by one)
            results.update({p.job.key: exc for p in chunk})
            if isinstance(exc, ACCOUNT_WIDE):
                stop.append(exc)
            return
        for pending in chunk:
            pending.existing = found.get(pending.job.key)

    unmatched = [p for p in records if p.existing is None and p.job.plan.lookup]
    per_call = max(1, driver.match_size)
    await each([unmatched[start:start + per_call] for start in range(0, len(unmatched), per_call)], match)
    records = [p for p in records if p.job.key not in results]
    if stop:
        results.update({p.job.key: stop[0] for p in records})
        records = []
    await _begin_many(sessions, tenant_id, scope, [(p.job.key, p.fingerprint) for p in records if p.existing is None])
    for pending in [p for p in records if p.existing is not None and not p.job.plan.fields]:
        known.append((pending.job, pending.fingerprint, pending.existing or "", None))  # nothing to update
    records = [p for p in records if p.existing is None or p.job.plan.fields]
    size = max(1, driver.batch_size)
    chunks = [(obj, group[start:start + size])
              for obj in sorted({p.job.plan.object for p in records})
              for group in [[p for p in records if p.job.plan.object == obj]]
              for start in range(0, len(group), size)]

    async def upsert(chunk: tuple[CrmObject, list[_Pending]]) -> None:
        obj, pendings = chunk
        outcomes = await _upsert(driver, obj, pendings, stop[0] if stop else None)
        for pending, outcome in zip(pendings, outcomes, strict=True):
            if isinstance(outcome, ConflictError) and outcome.existing_id is not None and pending.existing is None:
                # An earlier attempt created it with an older version of the row: write this one there.
                try:
                    await driver.update_record(obj, outcome.existing_id, pending.job.plan.fields)
                    outcome = outcome.existing_id
                except DriverError as exc:
                    outcome = exc
            if isinstance(outcome, str):
                known.append((pending.job, pending.fingerprint, outcome, None))
            else:
                results[pending.job.key] = outcome
                if isinstance(outcome, ACCOUNT_WIDE):
                    stop.append(outcome)

    await each(chunks, upsert)
    async with sessions() as session, session.begin():
        await _record_many(session, tenant_id, scope, [(job.key, fingerprint, external_id, url, job.row_version)
                                                       for job, fingerprint, external_id, url in known])
    results.update({job.key: external_id for job, _, external_id, _ in known})
    return results


async def _upsert(driver: BaseDriver, obj: CrmObject, chunk: list[_Pending], stop: BaseException | None
                  ) -> list[str | BaseException]:
    """One `upsert_many` call: per item its record id or its error (a failed call fails its whole chunk; so does a
    driver bug, instead of failing the tenant's whole pass again and again)."""
    if stop is not None:
        return [stop if isinstance(stop, DriverError) else DriverError("stopped", provider=driver.slug)] * len(chunk)
    items = [UpsertItem(idempotency_key=p.job.key, fields=p.job.plan.fields, external_id=p.existing) for p in chunk]
    try:
        outcomes = await driver.upsert_many(obj, items)
    except Exception as exc:
        return [exc] * len(chunk)
    return [o.external_id if o.error is None and o.external_id else (o.error or DriverError(
        "no record id", provider=driver.slug)) for o in outcomes]


async def _entries(sessions: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID, scope: str, keys: list[str]
                   ) -> dict[str, IdempotencyRecord]:
    if not keys:
        return {}
    async with sessions() as session:
        rows = await session.execute(select(IdempotencyRecord).where(
            IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.scope == scope,
            IdempotencyRecord.key.in_(keys)))
        return {row.key: row for row in rows.scalars()}


async def _begin_many(sessions: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID, scope: str,
                      keys: list[tuple[str, str]]) -> None:
    """`_begin` for a batch, in one statement: a `pending` entry for each key that has none yet (an existing one
    stays: an earlier attempt wrote it, and the provider's upsert key finds its record)."""
    if not keys:
        return
    async with sessions() as session, session.begin():
        now = utcnow()
        rows = [{"id": uuid.uuid4(), "tenant_id": tenant_id, "scope": scope, "key": key, "fingerprint": fingerprint,
                 "status": "pending", "created_at": now} for key, fingerprint in dict(keys).items()]
        await session.execute(_ledger_insert(session).values(rows).on_conflict_do_nothing(
            index_elements=["tenant_id", "scope", "key"]))
