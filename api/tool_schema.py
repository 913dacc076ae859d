"""The agent's tools as JSON Schema for one tenant: its mapped fields (labels from the CRM, types, picklist
enums, required fields), versioned with the mapping. Served at `GET /api/tools/schema` and as the MCP server's
tool list (api/mcp.py), so both say the same thing.

The `fields` of create/update are one schema per object (`oneOf`, each with `object` as a `const`): the keys
are the canonical short names the tenant's mapping writes (`budget_max`); a lead also takes other keys, which
are kept in its free-text details (drivers/mapping.py's rule), every other object refuses unknown keys.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from drivers import mapping as engine
from drivers import mapping_values as values
from drivers.base import BaseDriver, CrmObject
from drivers.mapping import TenantMapping
from drivers.models import FieldInfo
from drivers.registry import get_driver_class
from store.field_mapping import load_mapping
from store.models import Tenant

SCHEMA_FORMAT = "1"  # bump when this module's output shape changes (part of every version)

# The introspected types (drivers/mapping_values.py) as JSON Schema types.
_JSON_TYPES = {**dict.fromkeys(values.NUMBER, "number"), "int": "integer", "integer": "integer",
               **dict.fromkeys(values.BOOLEAN, "boolean")}

DESCRIPTIONS = {
    "crm_lookup_customer": "Find the caller in the business's CRM by phone (preferred), email or external id.",
    "crm_search_records": "Free-text search within one CRM object.",
    "crm_create_record": "Create a record in the business's CRM; retrying with the same idempotency_key never "
                         "creates a second one.",
    "crm_update_record": "Change only the given fields of an existing CRM record.",
    "crm_list_recent": "Records of one object changed since a moment (default: the last 24 hours).",
}


async def tenant_mapping(sessions: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID
                         ) -> tuple[type[BaseDriver], TenantMapping] | None:
    """The tenant's driver class and mapping, from the store only (no CRM call); None: no such tenant."""
    async with sessions() as session:
        tenant = await session.get(Tenant, tenant_id)
        if tenant is None:
            return None
        cls = get_driver_class(tenant.provider)
        return cls, await load_mapping(session, tenant_id, cls)


def field_schema(key: str, provider_field: str, info: FieldInfo | None) -> dict[str, Any]:
    """One canonical key as JSON Schema; typed and described from the CRM's field when it was introspected."""
    label = info.label if info is not None else key.partition(".")[2].replace("_", " ")
    out: dict[str, Any] = {"description": f"{label} (CRM field {provider_field})"}
    kind = info.type.lower() if info is not None else ""
    if info is not None and info.picklist_values and kind in values.MULTI:
        out |= {"type": "array", "items": {"type": "string", "enum": list(info.picklist_values)}}
    elif info is not None and info.picklist_values:
        out |= {"type": "string", "enum": list(info.picklist_values)}
    elif kind in _JSON_TYPES:
        out["type"] = _JSON_TYPES[kind]
    elif kind in values.DATE:
        out |= {"type": "string", "format": "date"}
    elif kind in values.DATETIME:
        out |= {"type": "string", "format": "date-time"}
    return out


def object_fields(mapping: TenantMapping, obj: CrmObject, *, creating: bool) -> dict[str, Any]:
    """The `fields` schema of one object: writable mapped keys, the CRM's required ones listed when creating."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for key, provider_field in sorted(mapping.keys_of(obj).items()):
        info = mapping.info(obj, provider_field)
        if info is not None and info.read_only:
            continue
        short = key.partition(".")[2]
        properties[short] = field_schema(key, provider_field, info)
        if creating and info is not None and info.required and short not in required:
            required.append(short)
    schema: dict[str, Any] = {"type": "object", "properties": properties, "minProperties": 1}
    if required:
        schema["required"] = required
    overflow = engine.OVERFLOW.get(obj.value)
    if overflow is not None and overflow in mapping.write:
        schema["additionalProperties"] = True
        schema["description"] = "Other keys (e.g. budget_max) are kept in the record's details as 'key: value'."
    else:
        schema["additionalProperties"] = False
    return schema


def _record_tool(mapping: TenantMapping, objects: list[CrmObject], *, creating: bool) -> dict[str, Any]:
    variants = []
    for obj in objects:
        properties: dict[str, Any] = {"object": {"const": obj.value},
                                      "fields": object_fields(mapping, obj, creating=creating)}
        required = ["object", "fields"]
        if creating:
            properties["idempotency_key"] = {"type": "string", "minLength": 1, "maxLength": 200,
                                             "description": "Retrying with the same key never makes a second "
                                                            "record."}
        else:
            properties["external_id"] = {"type": "string", "minLength": 1, "maxLength": 255}
            required.append("external_id")
        properties["conversation_id"] = {"type": "string", "maxLength": 100}
        variants.append({"type": "object", "properties": properties, "required": required,
                         "additionalProperties": False})
    return {"type": "object", "oneOf": variants}


def tool_schemas(cls: type[BaseDriver], mapping: TenantMapping) -> dict[str, Any]:
    """`{"version", "provider", "tools": [{"name", "description", "input_schema"}]}` for one tenant."""
    objects: list[CrmObject] = sorted(o for o in cls.supported_objects if o is not CrmObject.NOTE)
    object_enum = {"type": "string", "enum": [o.value for o in objects]}
    conversation = {"type": "string", "maxLength": 100}
    inputs: dict[str, dict[str, Any]] = {
        "crm_lookup_customer": {"type": "object", "properties": {
            "phone": {"type": "string", "minLength": 1, "maxLength": 40},
            "email": {"type": "string", "minLength": 3, "maxLength": 320},
            "external_id": {"type": "string", "minLength": 1, "maxLength": 255},
            "conversation_id": conversation},
            "anyOf": [{"required": ["phone"]}, {"required": ["email"]}, {"required": ["external_id"]}],
            "additionalProperties": False},
        "crm_search_records": {"type": "object", "properties": {
            "object": object_enum, "query": {"type": "string", "minLength": 1, "maxLength": 200},
            "limit": {"type": "integer", "minimum": 1, "maximum": 50, "default": 10},
            "conversation_id": conversation},
            "required": ["object", "query"], "additionalProperties": False},
        "crm_create_record": _record_tool(mapping, objects, creating=True),
        "crm_update_record": _record_tool(mapping, objects, creating=False),
        "crm_list_recent": {"type": "object", "properties": {
            "object": object_enum, "since": {"type": "string", "format": "date-time"},
            "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
            "conversation_id": conversation},
            "required": ["object"], "additionalProperties": False},
    }
    return {"version": f"{SCHEMA_FORMAT}.{mapping.version}", "provider": mapping.provider,
            "tools": [{"name": name, "description": DESCRIPTIONS[name], "input_schema": schema}
                      for name, schema in inputs.items()]}
