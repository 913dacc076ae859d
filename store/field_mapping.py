"""A tenant's field mapping: the driver's default catalog overridden by its `tenant_crm_field_mapping` rows.

One loader for the agent's tool routes (write and read) and the mirror activities (write).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import TenantCrmFieldMapping

DIRECTIONS = ("write", "read")


async def field_mappings(session: AsyncSession, tenant_id: uuid.UUID, catalog: Mapping[str, str]
                         ) -> dict[str, dict[str, str]]:
    """`{"write": {canonical key: provider field}, "read": {...}}` for one tenant."""
    maps = {direction: dict(catalog) for direction in DIRECTIONS}
    rows = await session.execute(
        select(TenantCrmFieldMapping.canonical_key, TenantCrmFieldMapping.provider_field, TenantCrmFieldMapping.kind)
        .where(TenantCrmFieldMapping.tenant_id == tenant_id, TenantCrmFieldMapping.kind.in_(DIRECTIONS)))
    for canonical_key, provider_field, kind in rows:
        maps[kind][canonical_key] = provider_field
    return maps
