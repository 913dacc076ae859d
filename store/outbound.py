"""Queries for inbound events and outbound calls: dedupe-inserts, consent, do-not-call and attempt counts.

People are identified by `person_hash`: HMAC-SHA256 of the normalized (E.164) phone under a per-tenant key
derived from `settings.subject_hash_key`, so the same phone hashes differently in two tenants and no table
holds a phone in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from store.outbound_models import CallRequest, DoNotCall, InboundCrmEvent, OutboundConsent, OutboundPolicy

DIALER_CREDENTIAL = "outbound:dialer"  # the vault entry holding a tenant's dialer signing secret


def tenant_person_key(subject_hash_key: str, tenant_id: uuid.UUID) -> bytes:
    return hmac.new(subject_hash_key.encode(), b"crm-sor/outbound-person/v1\x00" + tenant_id.bytes,
                    hashlib.sha256).digest()


def person_hash(subject_hash_key: str, tenant_id: uuid.UUID, e164: str) -> str:
    return hmac.new(tenant_person_key(subject_hash_key, tenant_id), e164.encode(), hashlib.sha256).hexdigest()


def _insert(session: AsyncSession, model: type[Any]) -> Any:
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(model)


async def insert_events(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> list[uuid.UUID]:
    """Insert event rows, skipping (tenant, provider, event_id) already stored; the ids of the new rows."""
    if not rows:
        return []
    statement = _insert(session, InboundCrmEvent).values(list(rows)).on_conflict_do_nothing(
        index_elements=["tenant_id", "provider", "event_id"]).returning(InboundCrmEvent.id)
    return list((await session.execute(statement)).scalars())


async def mark_events(session: AsyncSession, ids: Sequence[uuid.UUID], status: str, *,
                      only_from: str | None = None, processed_at: datetime | None = None) -> None:
    statement = update(InboundCrmEvent).where(InboundCrmEvent.id.in_(list(ids)))
    if only_from is not None:
        statement = statement.where(InboundCrmEvent.status == only_from)
    values: dict[str, Any] = {"status": status}
    if processed_at is not None:
        values["processed_at"] = processed_at
    await session.execute(statement.values(**values))


async def stale_received(session: AsyncSession, before: datetime, limit: int = 100) -> list[InboundCrmEvent]:
    """Events stored but never handed to Temporal (a crash between the ack and the start): to redispatch."""
    rows = await session.execute(select(InboundCrmEvent).where(
        InboundCrmEvent.status == "received", InboundCrmEvent.received_at < before)
        .order_by(InboundCrmEvent.received_at).limit(limit))
    return list(rows.scalars())


async def policy(session: AsyncSession, tenant_id: uuid.UUID) -> OutboundPolicy:
    found = await session.get(OutboundPolicy, tenant_id)
    return found or OutboundPolicy(tenant_id=tenant_id, window_start="08:00", window_end="21:00",
                                   daily_attempt_cap=3, dialer_url=None)


async def consent(session: AsyncSession, tenant_id: uuid.UUID, person: str, purpose: str,
                  channel: str) -> OutboundConsent | None:
    return (await session.execute(select(OutboundConsent).where(
        OutboundConsent.tenant_id == tenant_id, OutboundConsent.person_hash == person,
        OutboundConsent.purpose == purpose, OutboundConsent.channel == channel)
        .execution_options(populate_existing=True))).scalar_one_or_none()


async def on_do_not_call(session: AsyncSession, tenant_id: uuid.UUID, person: str) -> bool:
    found = await session.execute(select(DoNotCall.id).where(DoNotCall.tenant_id == tenant_id,
                                                             DoNotCall.person_hash == person))
    return found.first() is not None


async def placed_between(session: AsyncSession, tenant_id: uuid.UUID, person: str, start: datetime,
                         end: datetime) -> int:
    count = await session.execute(select(func.count()).select_from(CallRequest).where(
        CallRequest.tenant_id == tenant_id, CallRequest.person_hash == person,
        CallRequest.placed_at >= start, CallRequest.placed_at < end))
    return int(count.scalar_one())
