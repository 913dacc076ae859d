"""A tenant's field mapping as stored: override rows (`tenant_crm_field_mapping`) and the introspected schema
snapshot (`tenant_crm_schema`), loaded into the one engine's `TenantMapping` (drivers/mapping.py).

One loader for the agent's tool routes, the tool schemas/MCP, the operator routes and the mirror. The tool and /v1
routes read it through `cached_mapping` (a few seconds per process, `store/cache.py`): every write below marks its
session, and the session's commit drops the tenant's cached mapping, so a change made through this process is seen
at once and one made by another process within `CONFIG_TTL_SECONDS`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping

from sqlalchemy import delete, event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from drivers.base import BaseDriver
from drivers.mapping import TenantMapping, build
from drivers.models import FieldInfo
from store.base import utcnow
from store.cache import CONFIG_TTL_SECONDS, TtlCache
from store.models import TenantCrmFieldMapping, TenantCrmSchema

DIRECTIONS = ("write", "read")

# Effective mappings by (tenant, provider slug), for the agent's hot path.
MAPPINGS: TtlCache[TenantMapping] = TtlCache(CONFIG_TTL_SECONDS)
_CHANGED = "crm_sor.mapping_changed"  # session.info key: tenants whose mapping rows this session wrote


async def cached_mapping(sessions: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID,
                         driver: BaseDriver | type[BaseDriver]) -> TenantMapping:
    """`load_mapping` as this process read it within `MAPPINGS.ttl` seconds (TenantMapping is never mutated)."""
    async def load() -> TenantMapping:
        async with sessions() as session:
            return await load_mapping(session, tenant_id, driver)

    return await MAPPINGS.get((tenant_id, driver.slug), load)


def _changed(session: AsyncSession, tenant_id: uuid.UUID) -> None:
    session.info.setdefault(_CHANGED, set()).add(tenant_id)


@event.listens_for(Session, "after_commit")
def _forget_committed(session: Session) -> None:
    for tenant_id in session.info.pop(_CHANGED, ()):
        MAPPINGS.invalidate(tenant_id)


@event.listens_for(Session, "after_rollback")
def _nothing_changed(session: Session) -> None:
    session.info.pop(_CHANGED, None)


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
    _changed(session, tenant_id)
    row = (await session.execute(select(TenantCrmFieldMapping).where(
        TenantCrmFieldMapping.tenant_id == tenant_id, TenantCrmFieldMapping.canonical_key == canonical_key,
        TenantCrmFieldMapping.kind == kind))).scalars().first()
    if row is None:
        session.add(TenantCrmFieldMapping(tenant_id=tenant_id, canonical_key=canonical_key,
                                          provider_field=provider_field, kind=kind))
    else:
        row.provider_field = provider_field


async def delete_override(session: AsyncSession, tenant_id: uuid.UUID, kind: str, canonical_key: str) -> bool:
    _changed(session, tenant_id)
    result = await session.execute(delete(TenantCrmFieldMapping).where(
        TenantCrmFieldMapping.tenant_id == tenant_id, TenantCrmFieldMapping.canonical_key == canonical_key,
        TenantCrmFieldMapping.kind == kind))
    return bool(getattr(result, "rowcount", 0))


async def save_schema(session: AsyncSession, tenant_id: uuid.UUID, object: str, fields: Iterable[FieldInfo]) -> None:
    """Replace the snapshot of one object's fields (field names/labels/types only: configuration)."""
    _changed(session, tenant_id)
    dumped = [f.model_dump() for f in fields]
    row = (await session.execute(select(TenantCrmSchema).where(
        TenantCrmSchema.tenant_id == tenant_id, TenantCrmSchema.object == object))).scalars().first()
    if row is None:
        session.add(TenantCrmSchema(tenant_id=tenant_id, object=object, fields=dumped, fetched_at=utcnow()))
    else:
        row.fields, row.fetched_at = dumped, utcnow()
