"""Erasure requests and their per-(provider, object, record) outcomes, with the audit rows that prove them.

What the request keeps: the subject as a keyed hash, who asked, when, the outcomes and the audit trail.
The identifiers themselves (needed only to look the subject up, locally and in the CRM) are sealed with
AES-256-GCM under a key derived from `subject_hash_key`, bound to the request row, and cleared once no CRM
step is left to retry; they never travel through Temporal. Audit rows carry the subject hash and ids,
never identifiers or CRM record ids (a CRM id may itself be one of the identifiers).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.base import utcnow
from store.erasure import Subject
from store.models import AuditLog, ErasureOutcome, ErasureRequest

PENDING, DELETED, NOT_FOUND, DIVERGENT, FAILED = "pending", "deleted", "not_found", "divergent", "failed"
# Soft-deleted at the provider (an archive, a recycle bin): gone from its normal reads, purged by the provider
# at `provider_purge_after` — or never, when the provider keeps it (then an operator must delete it by hand).
ARCHIVED = "archived"
RUNNING, COMPLETED, NEEDS_ATTENTION = "running", "completed", "needs_attention"
NONCE_BYTES = 12


def sealing_key(subject_hash_key: str) -> bytes:
    """A 32-byte AES key derived from the subject-hash secret, so erasure works wherever hashing does."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"crm-sor/erasure-identifiers/v1")
    return hkdf.derive(subject_hash_key.encode())


def _aad(tenant_id: uuid.UUID, request_id: uuid.UUID) -> bytes:
    return f"crm-sor/erasure-identifiers/v1|tenant={tenant_id}|request={request_id}".encode()


def seal_subject(key: bytes, tenant_id: uuid.UUID, request_id: uuid.UUID, subject: Subject) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, subject.to_json(), _aad(tenant_id, request_id))


def open_subject(key: bytes, request: ErasureRequest) -> Subject | None:
    """The request's identifiers, or None once they were cleared. A wrong key or a row copied from
    another request fails the GCM tag (cryptography's InvalidTag)."""
    sealed = request.sealed_identifiers
    if sealed is None:
        return None
    plain = AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], _aad(request.tenant_id, request.id))
    return Subject.from_json(plain)


def audit(session: AsyncSession, request: ErasureRequest, action: str, *, actor_type: str = "system",
          actor_id: str = "forget-workflow", details: dict[str, Any] | None = None) -> None:
    """Add an audit row in the caller's transaction: the proof commits with the change it describes."""
    session.add(AuditLog(tenant_id=request.tenant_id, actor_type=actor_type, actor_id=actor_id[:200],
                         action=action, purpose="right to erasure", request_id=str(request.id),
                         subject_hash=request.subject_hash, details=dict(details or {})))


async def load_request(session: AsyncSession, request_id: uuid.UUID, *, for_update: bool = False) -> ErasureRequest:
    query = select(ErasureRequest).where(ErasureRequest.id == request_id)
    if for_update:
        query = query.with_for_update()
    request = (await session.execute(query)).scalar()
    if request is None:
        raise LookupError(f"erasure request {request_id} does not exist")
    return request


async def open_request_for(session: AsyncSession, tenant_id: uuid.UUID, subject_hash: str) -> ErasureRequest | None:
    """The running request for this subject, if any (a repeated request attaches to it)."""
    query = (select(ErasureRequest).where(ErasureRequest.tenant_id == tenant_id,
                                          ErasureRequest.subject_hash == subject_hash,
                                          ErasureRequest.status == RUNNING)
             .order_by(ErasureRequest.created_at.desc()).limit(1))
    return (await session.execute(query)).scalar()


async def add_targets(session: AsyncSession, request_id: uuid.UUID, provider: str,
                      targets: Iterable[tuple[str, str, str]]) -> int:
    """Record (object, external_id, source) targets as pending unless already known; returns new ones."""
    existing = {(o, e) for o, e in (await session.execute(
        select(ErasureOutcome.object, ErasureOutcome.external_id).where(
            ErasureOutcome.request_id == request_id, ErasureOutcome.provider == provider))).all()}
    fresh = []
    for obj, external_id, source in targets:
        if (obj, external_id) in existing:
            continue
        existing.add((obj, external_id))
        fresh.append(ErasureOutcome(request_id=request_id, provider=provider, object=obj, external_id=external_id,
                                    outcome=PENDING, source=source, needs_operator=False, attempts=0))
    session.add_all(fresh)
    await session.flush()
    return len(fresh)


async def target_external_ids(session: AsyncSession, request_id: uuid.UUID) -> list[str]:
    """Every CRM record id the request found for its subject, whatever its outcome."""
    result = await session.execute(select(ErasureOutcome.external_id).where(ErasureOutcome.request_id == request_id))
    return list(dict.fromkeys(result.scalars()))


async def target_ids(session: AsyncSession, request_id: uuid.UUID, outcomes: Iterable[str]) -> list[uuid.UUID]:
    """Outcome ids still to act on; the customer record last, so its related records go first."""
    customer_last = case((ErasureOutcome.object == "customer", 1), else_=0)
    result = await session.execute(
        select(ErasureOutcome.id).where(ErasureOutcome.request_id == request_id,
                                        ErasureOutcome.outcome.in_(list(outcomes)))
        .order_by(customer_last, ErasureOutcome.object, ErasureOutcome.external_id))
    return list(result.scalars())


async def settle(session: AsyncSession, request: ErasureRequest, outcome: ErasureOutcome, result: str, *,
                 hard_deleted: bool | None = None, error: str | None = None,
                 purge_delay_days: int | None = None) -> None:
    """Write one target's outcome and its audit row in the caller's transaction.

    A soft delete (`hard_deleted` False) is `archived`, with the date the provider purges it by itself; one the
    provider keeps for good needs an operator, like a divergent record.
    """
    if result == DELETED and hard_deleted is False:
        result = ARCHIVED
    outcome.outcome = result
    outcome.hard_deleted = hard_deleted
    outcome.provider_purge_after = (utcnow() + timedelta(days=purge_delay_days)
                                    if result == ARCHIVED and purge_delay_days is not None else None)
    outcome.needs_operator = result == DIVERGENT or (result == ARCHIVED and outcome.provider_purge_after is None)
    outcome.error = error
    outcome.attempts += 1
    details: dict[str, Any] = {"outcome_id": str(outcome.id), "provider": outcome.provider,
                               "object": outcome.object, "outcome": result}
    if hard_deleted is not None:
        details["hard_deleted"] = hard_deleted
    if outcome.provider_purge_after is not None:
        details["provider_purge_after"] = outcome.provider_purge_after.isoformat()
    if error:
        details["error"] = error
    if outcome.needs_operator:
        details["needs_operator"] = True
    audit(session, request, "erasure.crm_divergent" if result == DIVERGENT else "erasure.crm_delete", details=details)


async def outcome_counts(session: AsyncSession, request_id: uuid.UUID) -> dict[str, int]:
    result = await session.execute(
        select(ErasureOutcome.outcome, func.count()).where(ErasureOutcome.request_id == request_id)
        .group_by(ErasureOutcome.outcome))
    return {outcome: int(count) for outcome, count in result.all()}


async def finish(session: AsyncSession, request: ErasureRequest) -> tuple[str, dict[str, int]]:
    """Close the request: needs_attention while anything needs an operator, failed or errored, else completed.

    The sealed identifiers are cleared unless a retry could still need them (a failed target or a failed
    CRM lookup); divergent records are the operator's to delete by hand and need no identifiers.
    """
    counts = await outcome_counts(session, request.id)
    retry_left = counts.get(FAILED, 0) > 0 or counts.get(PENDING, 0) > 0 or request.error is not None
    by_hand = await session.scalar(select(func.count()).select_from(ErasureOutcome).where(
        ErasureOutcome.request_id == request.id, ErasureOutcome.needs_operator.is_(True)))
    attention = retry_left or bool(by_hand)
    request.status = NEEDS_ATTENTION if attention else COMPLETED
    request.completed_at = utcnow()
    if not retry_left:
        request.sealed_identifiers = None
    audit(session, request, "erasure.finished",
          details={"status": request.status, "outcomes": counts, "local_rows_scrubbed": request.local_rows_scrubbed,
                   "identifiers_cleared": request.sealed_identifiers is None})
    return request.status, counts


async def reopen(session: AsyncSession, request_id: uuid.UUID, tenant_id: uuid.UUID) -> ErasureRequest | None:
    """Mark a finished request running again for a retry; None when it is running or has nothing to retry."""
    retryable = (select(func.count()).select_from(ErasureOutcome)
                 .where(ErasureOutcome.request_id == request_id, ErasureOutcome.outcome.in_([FAILED, PENDING]))
                 .scalar_subquery())
    result = await session.execute(
        update(ErasureRequest)
        .where(ErasureRequest.id == request_id, ErasureRequest.tenant_id == tenant_id,
               ErasureRequest.status == NEEDS_ATTENTION,
               (retryable > 0) | ErasureRequest.error.is_not(None))
        .values(status=RUNNING, error=None, completed_at=None)
        .execution_options(synchronize_session=False))
    if not getattr(result, "rowcount", 0):
        return None
    return await load_request(session, request_id)


async def record_manual_deletion(session: AsyncSession, request_id: uuid.UUID, outcome_id: uuid.UUID, *,
                                 operator: str) -> bool | None:
    """An operator deleted a record by hand at the provider — a `divergent` one, or an archive the provider never
    purges (`needs_operator`): it becomes `deleted`, with an audit row naming the operator; a finished request is
    closed again (completed once nothing else needs attention).
    None: no such outcome on this request; False: the outcome needs no hand deletion."""
    request = await load_request(session, request_id, for_update=True)
    outcome = (await session.execute(select(ErasureOutcome).where(
        ErasureOutcome.id == outcome_id, ErasureOutcome.request_id == request_id).with_for_update())).scalar()
    if outcome is None:
        return None
    if outcome.outcome != DIVERGENT and not outcome.needs_operator:
        return False
    outcome.outcome, outcome.needs_operator, outcome.error = DELETED, False, None
    audit(session, request, "erasure.manual_delete", actor_type="platform_operator", actor_id=operator,
          details={"outcome_id": str(outcome.id), "provider": outcome.provider, "object": outcome.object,
                   "outcome": DELETED, "by_hand": True})
    await session.flush()
    if request.status == NEEDS_ATTENTION:  # a running request is closed by its workflow
        await finish(session, request)
    return True


async def list_for_tenant(session: AsyncSession, tenant_id: uuid.UUID, limit: int = 50) -> list[ErasureRequest]:
    rows = await session.execute(select(ErasureRequest).where(ErasureRequest.tenant_id == tenant_id)
                                 .order_by(ErasureRequest.created_at.desc()).limit(limit))
    return list(rows.scalars())
