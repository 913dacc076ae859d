"""Erasure queries: who the subject is locally, holds on their rows, the scrub, and the mirror guard.

The scrub is deliberately a separate statement from the retention purge: the purge refuses rows whose CRM
write has not succeeded, while an erasure must remove every row of the subject, synced or not.

A subject's rows are its customers (matched by our id, phone, email or the CRM id we recorded) and every
row hanging off them: conversations, leads, appointments and cases by `customer_id` (or by a conversation
of the subject), messages by conversation, qualification states by lead. Rows a running erasure has seen
are *held* (`erasure_holds`, ids only), so the lifecycle's CRM write can tell, cheaply and without the
identifiers, that it must not re-create data for them (`erasure_blocks_mirror`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

from sqlalchemy import Uuid, bindparam, delete, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from store.base import ContentRow
from store.models import (
    CONTENT_TABLES,
    Appointment,
    Case,
    Conversation,
    Customer,
    ErasureHold,
    Lead,
    Message,
    QualificationState,
)

TABLES: dict[str, type[ContentRow]] = {model.__tablename__: model for model in CONTENT_TABLES}  # type: ignore[attr-defined]

# Children are deleted before their parents, so a reader never sees an orphan pointing at nothing.
SCRUB_ORDER = ("messages", "qualification_states", "appointments", "cases", "leads", "conversations", "customers")


@dataclass(frozen=True)
class Subject:
    """The identifiers of an erasure subject, normalized (E.164 phone, lower-case email)."""

    phone: str | None = None
    email: str | None = None
    external_id: str | None = None
    customer_id: uuid.UUID | None = None

    def is_empty(self) -> bool:
        return not (self.phone or self.email or self.external_id or self.customer_id)

    def to_json(self) -> bytes:
        data = {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in asdict(self).items() if v is not None}
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Subject:
        data: dict[str, Any] = json.loads(raw)
        customer = data.get("customer_id")
        return cls(phone=data.get("phone"), email=data.get("email"), external_id=data.get("external_id"),
                   customer_id=uuid.UUID(customer) if customer else None)


def subject_hash(key: bytes, tenant_id: uuid.UUID, subject: Subject) -> str:
    """HMAC-SHA256 over tenant and identifiers: the same request always gets the same hash, and the hash
    reveals nothing without the key (a plain hash of a phone number is reversible by enumeration)."""
    message = b"crm-sor/erasure-subject/v1\x00" + str(tenant_id).encode() + b"\x00" + subject.to_json()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


async def resolve_subject_rows(session: AsyncSession, tenant_id: uuid.UUID, subject: Subject | None,
                               held: Iterable[uuid.UUID] = ()) -> dict[str, list[uuid.UUID]]:
    """Every local class-(c) row of the subject, by table: matched by identifiers and by earlier holds."""
    held_ids = list(dict.fromkeys(held))
    customer_match: list[Any] = [Customer.id.in_(held_ids)] if held_ids else []
    if subject is not None:
        if subject.customer_id:
            customer_match.append(Customer.id == subject.customer_id)
        if subject.phone:
            customer_match.append(Customer.phone == subject.phone)
        if subject.email:
            customer_match.append(func.lower(Customer.email) == subject.email)
        if subject.external_id:
            customer_match.append(Customer.crm_external_id == subject.external_id)
    customers = await _ids(session, Customer, tenant_id, customer_match)
    conversations = await _ids(session, Conversation, tenant_id,
                               _any_in(Conversation.customer_id, customers) + _any_in(Conversation.id, held_ids))
    by_owner = {
        model: await _ids(session, model, tenant_id,
                          _any_in(model.customer_id, customers) + _any_in(model.conversation_id, conversations)
                          + _any_in(model.id, held_ids))
        for model in (Lead, Appointment, Case)
    }
    leads = by_owner[Lead]
    messages = await _ids(session, Message, tenant_id,
                          _any_in(Message.conversation_id, conversations) + _any_in(Message.id, held_ids))
    states = await _ids(session, QualificationState, tenant_id,
                        _any_in(QualificationState.lead_id, leads) + _any_in(QualificationState.id, held_ids))
    rows = {"customers": customers, "conversations": conversations, "leads": leads,
            "appointments": by_owner[Appointment], "cases": by_owner[Case], "messages": messages,
            "qualification_states": states}
    return {table: ids for table, ids in rows.items() if ids}


def _any_in(column: Any, ids: Sequence[uuid.UUID]) -> list[Any]:
    return [column.in_(ids)] if ids else []


async def _ids(session: AsyncSession, model: Any, tenant_id: uuid.UUID, match: list[Any]) -> list[uuid.UUID]:
    if not match:
        return []
    result = await session.execute(select(model.id).where(model.tenant_id == tenant_id, or_(*match)).order_by(model.id))
    return list(result.scalars())


async def held_row_ids(session: AsyncSession, request_id: uuid.UUID) -> list[uuid.UUID]:
    result = await session.execute(select(ErasureHold.row_id).where(ErasureHold.request_id == request_id))
    return list(result.scalars())


async def hold_rows(session: AsyncSession, request_id: uuid.UUID, tenant_id: uuid.UUID,
                    rows: Mapping[str, Sequence[uuid.UUID]]) -> int:
    """Hold every given row for the request (idempotent); returns how many holds are new."""
    already = set(await held_row_ids(session, request_id))
    fresh = [ErasureHold(request_id=request_id, tenant_id=tenant_id, table_name=table, row_id=row_id)
             for table, ids in rows.items() for row_id in ids if row_id not in already]
    session.add_all(fresh)
    await session.flush()
    return len(fresh)


async def crm_ids_of_rows(session: AsyncSession, tenant_id: uuid.UUID,
                          rows: Mapping[str, Sequence[uuid.UUID]]) -> list[tuple[str, str]]:
    """(table, crm_external_id) for every given row whose CRM write recorded an id."""
    found: list[tuple[str, str]] = []
    for table, ids in rows.items():
        model: Any = TABLES[table]
        result = await session.execute(select(model.crm_external_id).where(
            model.tenant_id == tenant_id, model.id.in_(ids), model.crm_external_id.is_not(None)))
        found += [(table, external_id) for external_id in result.scalars()]
    return found


async def scrub_rows(session: AsyncSession, tenant_id: uuid.UUID,
                     rows: Mapping[str, Sequence[uuid.UUID]]) -> dict[str, int]:
    """Delete the given rows whatever their sync state (unlike the purge); returns deleted counts by table."""
    counts: dict[str, int] = {}
    for table in SCRUB_ORDER:
        ids = rows.get(table)
        if not ids:
            continue
        model: Any = TABLES[table]
        result = await session.execute(
            delete(model).where(model.tenant_id == tenant_id, model.id.in_(list(ids))).execution_options(
                synchronize_session=False))
        counts[table] = int(getattr(result, "rowcount", 0) or 0)
    return counts


async def erasure_blocks_mirror(session: AsyncSession, tenant_id: uuid.UUID, table_name: str,
                                row_id: uuid.UUID) -> bool:
    """True when a CRM write for this row must become a no-op: the row is gone (scrubbed or purged), or it,
    or a row it hangs off (its customer, conversation or lead, and their customer), is held by an erasure.

    Call it inside the CRM-write activity right before the driver call. One statement, ids only.
    """
    if table_name not in TABLES:
        return False
    found = await session.execute(_guard_statement(table_name), {"tenant_id": tenant_id, "row_id": row_id})
    row = found.first()
    return row is None or bool(row[1])


async def held_rows(session: AsyncSession, tenant_id: uuid.UUID, table_name: str, row_ids: list[uuid.UUID]
                    ) -> set[uuid.UUID]:
    """`erasure_blocks_mirror` for a batch of rows: those a CRM write must skip. Without any hold for the tenant
    (nearly always) one cheap query answers for the whole batch."""
    if not row_ids:
        return set()
    any_hold = await session.execute(select(exists().where(ErasureHold.tenant_id == tenant_id)))
    if not any_hold.scalar():
        return set()
    return {row_id for row_id in row_ids if await erasure_blocks_mirror(session, tenant_id, table_name, row_id)}


@cache
def _guard_statement(table_name: str) -> Any:
    """Built once per table: the guard sits on every CRM write, and building ORM expressions costs more
    than running them."""
    model: Any = TABLES[table_name]
    tenant, row = bindparam("tenant_id", type_=Uuid()), bindparam("row_id", type_=Uuid())
    related: list[Any] = [model.id] + [getattr(model, name) for name in ("customer_id", "conversation_id", "lead_id")
                                       if hasattr(model, name)]
    query = select(model.id)
    # One level up: a message's (or lead's) conversation's customer, a qualification state's lead's customer.
    parents: tuple[tuple[Any, str], ...] = ((Conversation, "conversation_id"), (Lead, "lead_id"))
    for parent, attribute in parents:
        if hasattr(model, attribute) and model is not parent:
            alias: Any = aliased(parent)
            query = query.outerjoin(alias, (alias.id == getattr(model, attribute)) & (alias.tenant_id == tenant))
            related.append(alias.customer_id)
    held = exists().where(ErasureHold.tenant_id == tenant, ErasureHold.row_id.in_(related))
    return query.add_columns(held).where(model.tenant_id == tenant, model.id == row)
