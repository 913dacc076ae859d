"""Idempotency for the public /v1 API over the `idempotency_ledger` table.

`once()` runs a request's work at most once per (tenant, scope, key); its `claim()` either hands the caller a
fresh claim, or answers for the key:
- the same key with the same body, already done → the first answer, replayed;
- the same key with a different body → 422 `idempotency-key-reused`;
- the same key while the first request is still running → 409 `idempotency-in-progress`.

Only successes are recorded: a failed attempt releases its claim, so the client can retry with the same key.
A claim left pending by a crashed process is taken over after `STALE_AFTER`; that is safe because the CRM
create underneath is itself idempotent on the same key (the driver's provider-side upsert), so the takeover
finds the record the crashed attempt may have made instead of making a second one.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.errors import Problem
from store.base import utcnow
from store.models import IdempotencyRecord

STALE_AFTER = timedelta(minutes=2)


@dataclass(frozen=True)
class Claim:
    """Ours to run: complete() or release() it."""

    id: uuid.UUID


@dataclass(frozen=True)
class Outcome:
    """The answer of the first request with a key; `replayed` when it is handed out again."""

    status: int
    external_id: str | None
    record_url: str | None = None
    replayed: bool = False


async def once(sessions: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID, scope: str, key: str,
               fingerprint: str, work: Callable[[], Awaitable[Outcome]]) -> Outcome:
    """Run `work` once per (tenant, scope, key): replay its recorded outcome, or 409/422 (see `claim`)."""
    claimed = await claim(sessions, tenant_id, scope, key, fingerprint)
    if isinstance(claimed, Outcome):
        return claimed
    try:
        outcome = await work()
    except BaseException:  # failures are not recorded: the same key may try again
        await release(sessions, claimed)
        raise
    await complete(sessions, claimed, outcome)
    return outcome


async def claim(sessions: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID, scope: str, key: str,
                fingerprint: str) -> Claim | Outcome:
    """Claim (tenant, scope, key) for a request with `fingerprint`, or answer for the earlier one."""
    for _ in range(3):  # a claim released between our insert and our read: try again
        claim_id = uuid.uuid4()
        try:
            async with sessions.begin() as session:
                await session.execute(insert(IdempotencyRecord).values(
                    id=claim_id, tenant_id=tenant_id, scope=scope, key=key, fingerprint=fingerprint,
                    status="pending", created_at=utcnow()))
            return Claim(id=claim_id)
        except IntegrityError:
            pass  # the key exists: look at what the first request left
        async with sessions.begin() as session:
            existing = await session.scalar(select(IdempotencyRecord).where(
                IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.scope == scope,
                IdempotencyRecord.key == key))
            if existing is None:
                continue
            if existing.fingerprint != fingerprint:
                raise Problem(422, "idempotency-key-reused", "This idempotency key was used with a different body.",
                              "Use a new idempotency_key for a different request.")
            if existing.status == "done":
                return Outcome(status=existing.response_status or 200, external_id=existing.external_id,
                               record_url=existing.record_url, replayed=True)
            if utcnow() - existing.created_at < STALE_AFTER:
                raise Problem(409, "idempotency-in-progress",
                              "A request with this idempotency key is still being processed.",
                              "Retry shortly; the first request's answer will then be replayed.",
                              headers={"Retry-After": "1"})
            taken = await session.execute(
                update(IdempotencyRecord)
                .where(IdempotencyRecord.id == existing.id, IdempotencyRecord.status == "pending",
                       IdempotencyRecord.created_at == existing.created_at)
                .values(created_at=utcnow()))
            if getattr(taken, "rowcount", 0) == 1:
                return Claim(id=existing.id)
    raise Problem(409, "idempotency-in-progress", "A request with this idempotency key is still being processed.",
                  headers={"Retry-After": "1"})


async def complete(sessions: async_sessionmaker[AsyncSession], claimed: Claim, outcome: Outcome) -> None:
    async with sessions.begin() as session:
        await session.execute(update(IdempotencyRecord).where(IdempotencyRecord.id == claimed.id).values(
            status="done", response_status=outcome.status, external_id=outcome.external_id,
            record_url=outcome.record_url, completed_at=utcnow()))


async def release(sessions: async_sessionmaker[AsyncSession], claimed: Claim) -> None:
    async with sessions.begin() as session:
        await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == claimed.id,
                                                              IdempotencyRecord.status == "pending"))
