"""The ingest routes' database work: each write is the class-(c) row plus its outbox intent, one transaction.

Nothing here waits on the CRM or on Temporal; the relay carries the intents on. References (a customer,
a conversation, a lead) must belong to the caller's tenant, otherwise they do not exist for it.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import insert as sql_insert
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import Problem
from api.ingest_models import (
    AppointmentIn,
    CaseIn,
    CustomerIn,
    FromTurn,
    LeadIn,
    MessageIn,
    QualificationIn,
    merged,
)
from store import content, outbox
from store.base import ContentRow, SyncState, utcnow
from store.models import Appointment, Case, Conversation, Customer, Lead, Message, QualificationState, Tenant

# Tenants recently seen active, with when to look again: the hot path skips one round trip per write. A
# disabled tenant's writes are refused at most this long after the switch (its lifecycles stop at once).
ACTIVE_FOR = 30.0
_active_until: dict[uuid.UUID, float] = {}


async def require_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    if _active_until.get(tenant_id, 0.0) > time.monotonic():
        return
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None or tenant.status == "disabled":
        _active_until.pop(tenant_id, None)
        raise Problem(403, "tenant-inactive", "This token's tenant is unknown or disabled.")
    if len(_active_until) > 10_000:  # bounded: forget everyone rather than grow without limit
        _active_until.clear()
    _active_until[tenant_id] = time.monotonic() + ACTIVE_FOR


async def require_row(session: AsyncSession, model: Any, tenant_id: uuid.UUID, row_id: uuid.UUID, *,
                      what: str, status: int = 422) -> Any:
    row = await session.execute(select(model).where(model.tenant_id == tenant_id, model.id == row_id))
    found = row.scalar_one_or_none()
    if found is None:
        raise Problem(status, f"unknown-{what}", f"No {what} {row_id} for this tenant (it may have been purged).")
    return found


async def existing(session: AsyncSession, model: Any, tenant_id: uuid.UUID, row_id: uuid.UUID | None) -> Any | None:
    """A retried POST with the agent's own id: the row it made the first time (another tenant's: a conflict)."""
    if row_id is None:
        return None
    found = await session.get(model, row_id)
    if found is not None and found.tenant_id != tenant_id:
        raise Problem(409, "id-conflict", "This id is already taken; use another one.")
    return found


async def insert(session: AsyncSession, row: ContentRow, table: str) -> None:
    """The row (a transient model, completed with its column defaults) and its `create` intent."""
    columns = type(row).__table__.columns  # type: ignore[attr-defined]
    values = {column.key: getattr(row, column.key) for column in columns}
    for column in columns:
        if values[column.key] is None and column.default is not None:
            default = column.default
            values[column.key] = default.arg(None) if default.is_callable else default.arg
            setattr(row, column.key, values[column.key])
    await outbox.insert_with_intent(session, type(row), values, "create")


async def update(session: AsyncSession, table: str, tenant_id: uuid.UUID, row: ContentRow,
                 values: dict[str, Any]) -> bool:
    """The change, the row set back to pending (so no purge can drop it), and its `update` intent; False (and
    nothing written: no CRM write, no new retention window) when the values are what the row already holds."""
    changes = {key: value for key, value in values.items() if getattr(row, key) != value}
    if not changes:
        return False
    await content.touch_pending(session, table, tenant_id, row.id, changes)
    await outbox.add(session, [outbox.intent_values(tenant_id, table, row.id, "update")])
    return True


async def new_customer(session: AsyncSession, tenant_id: uuid.UUID, body: CustomerIn) -> tuple[Customer, bool]:
    found = await existing(session, Customer, tenant_id, body.id)
    if found is not None:
        return found, False
    row = Customer(id=body.id or uuid.uuid4(), tenant_id=tenant_id, name=body.name, phone=body.phone,
                   email=body.email, fields=dict(body.fields), crm_external_id=body.external_id,
                   sync_state=SyncState.PENDING.value, sync_attempts=0)
    await insert(session, row, "customers")
    return row, True


async def add_messages(session: AsyncSession, tenant_id: uuid.UUID, conversation_id: uuid.UUID,
                       messages: list[MessageIn]) -> tuple[list[uuid.UUID], int]:
    """New message rows (a resent turn is skipped) with one `append` intent each; (ids, duplicates)."""
    turns = [m.turn_id for m in messages]
    if len(set(turns)) != len(turns):
        raise Problem(422, "duplicate-turn", "A turn_id appears twice in this request.")
    known = await session.execute(select(Message.turn_id).where(Message.conversation_id == conversation_id,
                                                                Message.turn_id.in_(turns)))
    seen = set(known.scalars())
    now = utcnow()
    fresh = [m for m in messages if m.turn_id not in seen]
    ids = [uuid.uuid4() for _ in fresh]
    rows: list[dict[str, Any]] = [
        {"id": row_id, "tenant_id": tenant_id, "conversation_id": conversation_id, "turn_id": m.turn_id,
         "role": m.role, "text": m.text, "spoken_at": m.spoken_at or now, "created_at": now, "updated_at": now,
         "sync_state": SyncState.PENDING.value, "sync_attempts": 0, "crm_external_id": None, "synced_at": None,
         "last_sync_error": None, "purge_after": None}
        for row_id, m in zip(ids, fresh, strict=True)]
    if rows:
        # First the conversation goes back to pending (and, on PostgreSQL, stays locked until commit): a purge
        # racing with this insert then finds it unsynced and leaves it, so no message is ever orphaned.
        if not await content.touch_pending(session, "conversations", tenant_id, conversation_id):
            raise _no_conversation(conversation_id)
        await (await session.connection()).execute(sql_insert(Message.__table__), rows)  # type: ignore[arg-type]
        await outbox.add(session, [outbox.intent_values(tenant_id, "messages", row_id, "append") for row_id in ids])
    return ids, len(seen)


async def require_conversation(session: AsyncSession, tenant_id: uuid.UUID, conversation_id: uuid.UUID) -> None:
    query = select(Conversation.id).where(Conversation.tenant_id == tenant_id, Conversation.id == conversation_id)
    if (await session.execute(query)).first() is None:
        raise _no_conversation(conversation_id)


def _no_conversation(conversation_id: uuid.UUID) -> Problem:
    return Problem(404, "unknown-conversation",
                   f"No conversation {conversation_id} for this tenant (it may have been purged).")


async def new_row(session: AsyncSession, tenant_id: uuid.UUID, model: Any, table: str, body: FromTurn,
                  **columns: Any) -> tuple[Any, bool]:
    """A row the agent made during a turn (lead, appointment, case), or the one a retried POST made."""
    found = await existing(session, model, tenant_id, body.id)
    if found is not None:
        return found, False
    await check_refs(session, tenant_id, body.customer_id, body.conversation_id)
    row = model(id=body.id or uuid.uuid4(), tenant_id=tenant_id, customer_id=body.customer_id,
                conversation_id=body.conversation_id, **columns)
    await insert(session, row, table)
    return row, True


async def new_lead(session: AsyncSession, tenant_id: uuid.UUID, body: LeadIn) -> tuple[Lead, bool]:
    row, created = await new_row(session, tenant_id, Lead, "leads", body, source=body.source, status=body.status,
                                 fields=dict(body.fields))
    if created and body.qualification is not None:
        await set_qualification(session, tenant_id, row.id, body.qualification)
    return row, created


async def new_appointment(session: AsyncSession, tenant_id: uuid.UUID, body: AppointmentIn
                          ) -> tuple[Appointment, bool]:
    return await new_row(session, tenant_id, Appointment, "appointments", body, starts_at=body.starts_at,
                         ends_at=body.ends_at, service=body.service, status=body.status, notes=body.notes)


async def new_case(session: AsyncSession, tenant_id: uuid.UUID, body: CaseIn) -> tuple[Case, bool]:
    return await new_row(session, tenant_id, Case, "cases", body, subject=body.subject,
                         description=body.description, status=body.status, priority=body.priority)


async def set_qualification(session: AsyncSession, tenant_id: uuid.UUID, lead_id: uuid.UUID,
                            body: QualificationIn) -> uuid.UUID:
    found = await session.execute(select(QualificationState).where(QualificationState.lead_id == lead_id,
                                                                   QualificationState.tenant_id == tenant_id))
    current = found.scalar_one_or_none()
    if current is None:
        row = QualificationState(id=uuid.uuid4(), tenant_id=tenant_id, lead_id=lead_id, stage=body.stage,
                                 score=body.score, answers=dict(body.answers), sync_state=SyncState.PENDING.value,
                                 sync_attempts=0)
        await insert(session, row, "qualification_states")
        return row.id
    await update(session, "qualification_states", tenant_id, current,
                 {"stage": body.stage, "score": body.score, "answers": merged(current.answers, body.answers)})
    return current.id


async def check_refs(session: AsyncSession, tenant_id: uuid.UUID, customer_id: uuid.UUID | None,
                     conversation_id: uuid.UUID | None) -> None:
    if customer_id is not None:
        await require_row(session, Customer, tenant_id, customer_id, what="customer")
    if conversation_id is not None:
        await require_row(session, Conversation, tenant_id, conversation_id, what="conversation")
