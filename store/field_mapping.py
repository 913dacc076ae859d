"""A tenant's field mapping as stored: override rows (`tenant_crm_field_mapping`) and the introspected schema
snapshot (`tenant_crm_schema`), loaded into the one engine's `TenantMapping` (drivers/mapping.py).

One loader for the agent's tool routes, the tool schemas/MCP, the operator routes and the mirror.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from drivers.base import BaseDriver
from drivers.mapping import TenantMapping, build
from drivers.models import FieldInfo
from store.base import utcnow
from store.models import TenantCrmFieldMapping, TenantCrmSchema

DIRECTIONS = ("write", "read")


async def load_mapping(session: AsyncSession, tenant_id: uuid.UUID, driver: BaseDriver | type[BaseDriver]
                       ) -> TenantMapping:
    """The tenant's effective mapping: its driver's catalog, its overrides, its last introspected schema."""
    rows = (await session.execute(
        select(TenantCrmFieldMapping.kind, TenantCrmFieldMapping.canonical_key, TenantCrmFieldMapping.provider_field)
        .where(TenantCrmFieldMapping.tenant_id == tenant_id))).all()
    snapshots = (await session.execute(
        select(TenantCrmSchema.object, TenantCrmSchema.fields).where(TenantCrmSchema.tenant_id == tenant_id))).all()
    schema = {obj: [FieldInfo.model_validate(f) for f in fields] for obj, fields in snapshots}
    return build(driver.slug, driver.default_field_catalog, [(k, c, p) for k, c, p in rows], schema)


async def field_mappings(session: AsyncSession, tenant_id: uuid.UUID, catalog: Mapping[str, str]
                         ) -> dict[str, dict[str, str]]:
    """`{"write": {canonical key: provider field}, "read": {...}}` for one tenant (kept for older callers)."""
    maps = {direction: dict(catalog) for direction in DIRECTIONS}
    rows = await session.execute(
        select(TenantCrmFieldMapping.canonical_key, TenantCrmFieldMapping.provider_field, TenantCrmFieldMapping.kind)
        .where(TenantCrmFieldMapping.tenant_id == tenant_id, TenantCrmFieldMapping.kind.in_(DIRECTIONS)))
    for canonical_key, provider_field, kind in rows:
        maps[kind][canonical_key] = provider_field
    return maps


async def put_override(session: AsyncSession, tenant_id: uuid.UUID, kind: str, canonical_key: str,
                       provider_field: str) -> None:
    """Insert or replace one override (unique per tenant, key and kind)."""
    row = (await session.execute(select(TenantCrmFieldMapping).where(
        TenantCrmFieldMapping.tenant_id == tenant_id, TenantCrmFieldMapping.canonical_key == canonical_key,
        TenantCrmFieldMapping.kind == kind))).scalars().first()
    if row is None:
        session.add(TenantCrmFieldMapping(tenant_id=tenant_id, canonical_key=canonical_key,
                                          provider_field=provider_field, kind=kind))
    else:
        row.provider_field = provider_field


async def delete_override(session: AsyncSession, tenant_id: uuid.UUID, kind: str, canonical_key: str) -> bool:
    result = await session.execute(delete(TenantCrmFieldMapping).where(
        TenantCrmFieldMapping.tenant_id == tenant_id, TenantCrmFieldMapping.canonical_key == canonical_key,
        TenantCrmFieldMapping.kind == kind))
    return bool(getattr(result, "rowcount", 0))


async def save_schema(session: AsyncSession, tenant_id: uuid.UUID, object: str, fields: Iterable[FieldInfo]) -> None:
    """Replace the snapshot of one object's fields (field names/labels/types only: configuration)."""
    dumped = [f.model_dump() for f in fields]
    row = (await session.execute(select(TenantCrmSchema).where(
        TenantCrmSchema.tenant_id == tenant_id, TenantCrmSchema.object == object))).scalars().first()
    if row is None:
        session.add(TenantCrmSchema(tenant_id=tenant_id, object=object, fields=dumped, fetched_at=utcnow()))
    else:
        row.fields, row.fetched_at = dumped, utcnow()
