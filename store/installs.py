"""The installer's verdict on a tenant (`tenant_crm_installs`) and what it means for the tenant's status.

A tenant is not `active` while exactly-once create is impossible in its CRM (manual steps outstanding), unless an
operator accepted running degraded: then it is `active` with a `degraded:` status reason and an install state
`degraded`, both visible on the connection and install routes.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.base import utcnow
from store.models import Tenant, TenantCrmInstall

PENDING_REASON = "exactly-once create unavailable: fields must be created in the CRM (see the install report)"
DEGRADED_REASON = "degraded: exactly-once create unavailable (accepted by an operator; see the install report)"


async def record(session: AsyncSession, tenant_id: uuid.UUID, report: dict[str, Any], *,
                 accept_degraded: bool = False) -> str:
    """Keep the report and return the install state: complete | manual_steps | degraded.

    A tenant already accepted as degraded stays degraded until its fields exist.
    """
    row = await session.get(TenantCrmInstall, tenant_id)
    state = str(report["state"])
    if state == "manual_steps" and (accept_degraded or (row is not None and row.state == "degraded")):
        state = "degraded"
    if row is None:
        session.add(TenantCrmInstall(tenant_id=tenant_id, state=state, report=report, checked_at=utcnow()))
    else:
        row.state, row.report, row.checked_at = state, report, utcnow()
    return state


def gated_status(connected: bool, reason: str | None, install_state: str | None) -> tuple[str, str | None]:
    """The tenant's (status, reason) from its connection test and install state."""
    if not connected:
        return "pending", reason
    if install_state == "manual_steps":
        return "pending", PENDING_REASON
    if install_state == "degraded":
        return "active", DEGRADED_REASON
    return "active", None


async def apply(session: AsyncSession, tenant_id: uuid.UUID, install_state: str) -> Tenant | None:
    """After an operator's install run: move a tenant that was held (or degraded) by the install to its new status."""
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None or tenant.status == "disabled":
        return tenant
    held = tenant.status_reason in (PENDING_REASON, DEGRADED_REASON)
    if tenant.status == "active" or held:
        tenant.status, tenant.status_reason = gated_status(True, None, install_state)
    return tenant


async def state_of(session: AsyncSession, tenant_id: uuid.UUID) -> TenantCrmInstall | None:
    return (await session.execute(select(TenantCrmInstall).where(TenantCrmInstall.tenant_id == tenant_id))
            ).scalars().first()
