"""A tenant's phone region (`tenants.settings.default_region`, set at tenant creation), cached briefly per process.

Routes that normalize phones outside a driver (ingest) read it here; a driver reads it from its config.
"""

from __future__ import annotations

import time
import uuid

from starlette.requests import Request

from api.context import context_of
from drivers.text import DEFAULT_REGION, region_of
from store.models import Tenant

_TTL_SECONDS = 60.0
_cache: dict[uuid.UUID, tuple[float, str]] = {}


async def tenant_region(request: Request, tenant_id: uuid.UUID) -> str:
    """The tenant's region (US for an unknown tenant: the caller's own tenant check answers that case)."""
    cached = _cache.get(tenant_id)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    async with context_of(request).sessions() as session:
        tenant = await session.get(Tenant, tenant_id)
    region = region_of(tenant.settings) if tenant is not None else DEFAULT_REGION
    if len(_cache) > 10_000:  # bounded: forget everyone rather than grow without limit
        _cache.clear()
    _cache[tenant_id] = (time.monotonic() + _TTL_SECONDS, region)
    return region
