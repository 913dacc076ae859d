"""POST /api/tenant/forget/{id}/outcomes/{outcome}/manual-deletion: an operator records that a `divergent` record
was deleted by hand at the provider (the console's button calls the same service)."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.auth import mint_token
from api.context import AppContext
from store.models import AuditLog, ErasureOutcome, ErasureRequest


async def _finished_request(sessions: async_sessionmaker[AsyncSession], tenant: uuid.UUID,
                            outcomes: list[str]) -> tuple[uuid.UUID, list[uuid.UUID]]:
    request_id = uuid.uuid4()
    ids = [uuid.uuid4() for _ in outcomes]
    async with sessions() as session, session.begin():
        session.add(ErasureRequest(id=request_id, tenant_id=tenant, subject_hash="ab" * 32, requested_by="test",
                                   status="needs_attention", sealed_identifiers=None))
        await session.flush()
        session.add_all([ErasureOutcome(id=oid, request_id=request_id, provider="mindbody", object="customer",
                                        external_id=f"{n}", outcome=outcome, needs_operator=outcome == "divergent",
                                        attempts=1)
                         for n, (oid, outcome) in enumerate(zip(ids, outcomes, strict=True))])
    return request_id, ids


def _operator(ctx: AppContext, tenant: uuid.UUID) -> dict[str, str]:
    token = mint_token(ctx.settings, subject="dana.ops", role="operator", tenant_id=tenant)
    return {"Authorization": f"Bearer {token}"}


async def test_the_last_divergent_record_deleted_by_hand_completes_the_request(
        api: httpx.AsyncClient, ctx: AppContext, sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = uuid.uuid4()
    request_id, [first, second, done] = await _finished_request(sessions, tenant, ["divergent", "divergent", "deleted"])
    path = f"/api/tenant/forget/{request_id}/outcomes/{{}}/manual-deletion"

    answer = await api.post(path.format(first), headers=_operator(ctx, tenant))
    assert answer.status_code == 200
    assert answer.json()["status"] == "needs_attention" and answer.json()["needs_operator"] == 1  # one left
    answer = await api.post(path.format(second), headers=_operator(ctx, tenant))
    view = answer.json()
    assert view["status"] == "completed" and view["needs_operator"] == 0
    assert {o["outcome"] for o in view["outcomes"]} == {"deleted"}
    async with sessions() as session:
        audits = (await session.execute(select(AuditLog).where(
            AuditLog.request_id == str(request_id), AuditLog.action == "erasure.manual_delete"))).scalars().all()
    assert sorted(a.details["outcome_id"] for a in audits) == sorted([str(first), str(second)])
    assert {(a.actor_type, a.actor_id) for a in audits} == {("platform_operator", "dana.ops")}

    again = await api.post(path.format(done), headers=_operator(ctx, tenant))
    assert again.status_code == 409 and again.json()["type"].endswith("/not-divergent")


async def test_another_tenants_operator_and_an_unknown_outcome_get_404(
        api: httpx.AsyncClient, ctx: AppContext, sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = uuid.uuid4()
    request_id, [divergent] = await _finished_request(sessions, tenant, ["divergent"])
    path = f"/api/tenant/forget/{request_id}/outcomes/{divergent}/manual-deletion"
    assert (await api.post(path, headers=_operator(ctx, uuid.uuid4()))).status_code == 404
    unknown = f"/api/tenant/forget/{request_id}/outcomes/{uuid.uuid4()}/manual-deletion"
    assert (await api.post(unknown, headers=_operator(ctx, tenant))).status_code == 404
    async with sessions() as session:
        outcome = await session.get(ErasureOutcome, divergent)
    assert outcome is not None and outcome.outcome == "divergent"  # untouched
