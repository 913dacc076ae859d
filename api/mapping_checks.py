"""Checking a tenant's field mapping against its CRM's live introspection (`describe_schema`).

Used by the operator mapping routes (api/routes/mapping.py) and the installer. Field names and labels are
schema, not customer content: reports name them freely.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.crm import classify, failure_problem
from drivers import mapping as engine
from drivers.base import BaseDriver, CrmObject
from drivers.errors import DriverError
from drivers.mapping import TenantMapping
from drivers.models import FieldInfo
from store.field_mapping import load_mapping, save_schema


async def introspect(sessions: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID, driver: BaseDriver,
                     objects: list[CrmObject]) -> TenantMapping:
    """Read the CRM's fields for `objects`, keep the snapshot, and return the mapping with it.

    Objects the provider cannot describe (no such object on this CRM) are skipped; a CRM failure is a problem.
    """
    found: dict[str, list[FieldInfo]] = {}
    try:
        for obj in objects:
            if obj in driver.supported_objects and obj is not CrmObject.NOTE:
                found[obj.value] = await driver.describe_schema(obj)
    except DriverError as exc:
        raise failure_problem(classify(exc)) from None
    async with sessions.begin() as session:
        for obj_name, fields in found.items():
            await save_schema(session, tenant_id, obj_name, fields)
    async with sessions() as session:
        return await load_mapping(session, tenant_id, driver)


def field_problem(mapping: TenantMapping, obj: str, key: str, provider_field: str, kind: str) -> dict[str, Any] | None:
    """What is wrong with mapping `key` to `provider_field` on this CRM (None: nothing, or never introspected)."""
    fields = mapping.schema.get(obj)
    if not fields:
        return None
    info = fields.get(provider_field)
    if info is None:
        return {"key": key, "provider_field": provider_field, "code": "unknown_field",
                "message": f"{obj} has no field {provider_field} in this CRM",
                "suggestions": list(engine.suggest(provider_field, fields,
                                                   labels={n: f.label for n, f in fields.items()}))}
    if kind == "write" and info.read_only:
        return {"key": key, "provider_field": provider_field, "code": "not_writable",
                "message": f"{provider_field} is read-only in this CRM"}
    return None


def report(mapping: TenantMapping, objects: list[str]) -> dict[str, Any]:
    """Per object: mapped fields the CRM lacks (with suggestions), read-only write targets, required fields no
    mapping fills; `ok` when there is nothing to fix."""
    out: dict[str, Any] = {}
    for obj in objects:
        fields = mapping.schema.get(obj)
        if not fields:
            continue
        problems = [p for kind, table in (("write", mapping.write), ("read", mapping.read))
                    for key, target in sorted(table.items()) if key.startswith(f"{obj}.")
                    if (p := field_problem(mapping, obj, key, target, kind)) is not None]
        filled = set(mapping.keys_of(obj).values())
        required = sorted(f.name for f in fields.values() if f.required and not f.read_only and f.name not in filled)
        out[obj] = {"problems": _unique(problems), "required_unmapped": required}
    ok = all(not o["problems"] and not o["required_unmapped"] for o in out.values())
    return {"ok": ok, "version": mapping.version, "objects": out}


def _unique(problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[tuple[str, str]] = set()
    out = []
    for problem in problems:
        if (problem["key"], problem["code"]) not in seen:
            seen.add((problem["key"], problem["code"]))
            out.append(problem)
    return out
