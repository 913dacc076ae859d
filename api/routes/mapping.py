"""Operator routes for a tenant's field mapping (operator JWT; an operator pinned to one tenant sees only it).

- `GET    /api/operator/tenants/{id}/mapping` — the effective mapping: defaults + overrides, version
- `PUT    /api/operator/tenants/{id}/mapping/{kind}/{key}` `{"provider_field": …}` — set an override, checked
  against the CRM's live introspection first (`"verify": false` skips that for CRMs that cannot describe)
- `DELETE /api/operator/tenants/{id}/mapping/{kind}/{key}` — back to the driver's default
- `POST   /api/operator/tenants/{id}/mapping/validate` — introspect the CRM now, keep the snapshot, report
- `POST   /api/operator/tenants/{id}/mapping/preview` `{"object", "fields"}` — the CRM payload a sample becomes

See docs/mapping.md.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api.auth import require_operator
from api.context import context_of
from api.crm import classify, driver_provider, failure_problem, mapping_problem
from api.errors import Problem, read_json
from api.mapping_checks import field_problem, introspect, report
from api.openapi import document
from drivers import mapping as engine
from drivers.base import BaseDriver, CrmObject
from drivers.errors import DriverError
from drivers.mapping import UnmappedFieldsError
from drivers.registry import get_driver_class
from store.field_mapping import delete_override, load_mapping, put_override
from store.models import Tenant
from vault.connections import Actor

PREFIX = "/api/operator/tenants/{tenant_id:uuid}/mapping"
_KEY = re.compile(r"^(customer|lead|deal|case|appointment|note)\.[a-z][a-z0-9_]{0,100}$")
_OBJECT_KEY = re.compile(r"^(customer|lead|deal|case|appointment|note)$")


class MappingEntry(BaseModel):
    kind: str
    key: str
    provider_field: str
    source: Literal["default", "override"]


class MappingView(BaseModel):
    """The tenant's effective mapping; `version` changes with every override and introspection."""

    tenant_id: uuid.UUID
    provider: str
    version: str
    entries: list[MappingEntry]
    introspected: list[str] = Field(description="Objects whose CRM fields are known (validate refreshes them).")


class OverrideBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider_field: Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_.:\-]+$")]
    verify: bool = True


class ValidationReport(BaseModel):
    ok: bool
    version: str
    objects: dict[str, Any]


class PreviewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    object: CrmObject
    fields: dict[str, Any] = Field(min_length=1, max_length=200)


class Preview(BaseModel):
    object: CrmObject
    payload: dict[str, Any]
    version: str


async def _tenant(request: Request) -> tuple[uuid.UUID, Actor]:
    tenant_id: uuid.UUID = request.path_params["tenant_id"]
    principal = require_operator(request, tenant_id)
    async with context_of(request).sessions() as session:
        if await session.get(Tenant, tenant_id) is None:
            raise Problem(404, "not-found", "No such tenant.")
    return tenant_id, Actor(type="platform_operator", id=principal.subject, purpose="field mapping")


def _kind_and_key(request: Request) -> tuple[str, str]:
    kind, key = request.path_params["kind"], request.path_params["key"]
    if kind not in engine.KINDS:
        raise Problem(404, "not-found", f"No mapping kind {kind[:20]!r}.", f"Kinds: {', '.join(engine.KINDS)}.")
    pattern = _OBJECT_KEY if kind == "object" else _KEY
    if kind != "trigger" and not pattern.match(key):
        raise Problem(422, "invalid-key", "Not a canonical key.",
                      "Use object.name (lead.budget_max), or an object name for kind object.")
    if kind == "trigger" and not re.match(r"^[A-Za-z0-9_.]{1,128}$", key):
        raise Problem(422, "invalid-key", "Not a trigger field name.")
    return kind, key


@asynccontextmanager
async def _open(request: Request, tenant_id: uuid.UUID, actor: Actor) -> AsyncIterator[BaseDriver]:
    """The tenant's driver; no connected CRM or a CRM failure is the same problem the tool routes answer."""
    try:
        async with driver_provider(request).open(tenant_id, actor) as driver:
            yield driver
    except (LookupError, DriverError) as exc:
        raise failure_problem(classify(exc)) from None


def _view(tenant_id: uuid.UUID, mapping: engine.TenantMapping) -> dict[str, Any]:
    overridden = {(kind, key) for kind, key, _ in mapping.overrides}
    entries = [{"kind": kind, "key": key, "provider_field": field,
                "source": "override" if (kind, key) in overridden else "default"}
               for kind, table in (("write", mapping.write), ("read", mapping.read), ("object", mapping.objects),
                                   ("trigger", mapping.triggers))
               for key, field in sorted(table.items())]
    return {"tenant_id": str(tenant_id), "provider": mapping.provider, "version": mapping.version,
            "entries": entries, "introspected": sorted(mapping.schema)}


async def _current(request: Request, tenant_id: uuid.UUID, driver: BaseDriver | type[BaseDriver]
                   ) -> engine.TenantMapping:
    async with context_of(request).sessions() as session:
        return await load_mapping(session, tenant_id, driver)


def _driver_class(tenant: Tenant) -> type[BaseDriver]:
    return get_driver_class(tenant.provider)


@document(responses={200: MappingView}, auth="operator", errors={404: "No such tenant (for this operator)"})
async def show(request: Request) -> JSONResponse:
    """The effective mapping: the driver's defaults and the tenant's overrides, per kind, with its version."""
    tenant_id, _ = await _tenant(request)
    async with context_of(request).sessions() as session:
        tenant = await session.get(Tenant, tenant_id)
        assert tenant is not None
        mapping = await load_mapping(session, tenant_id, _driver_class(tenant))
    return JSONResponse(_view(tenant_id, mapping))


@document(request=OverrideBody, responses={200: MappingView}, auth="operator",
          errors={404: "No such tenant or kind", 422: "Not a canonical key, or a field the CRM does not have",
                  409: "The CRM is not connected"})
async def put(request: Request) -> JSONResponse:
    """Map a canonical key to a provider field; checked against the CRM's live field list unless `verify` is false."""
    tenant_id, actor = await _tenant(request)
    kind, key = _kind_and_key(request)
    body = OverrideBody.model_validate(await read_json(request, 16_384))
    ctx = context_of(request)
    async with _open(request, tenant_id, actor) as driver:
        if body.verify and kind in ("write", "read"):
            obj = key.partition(".")[0]
            mapping = await introspect(ctx.sessions, tenant_id, driver, [CrmObject(obj)])
            problem = field_problem(mapping, obj, key, body.provider_field, kind)
            if problem is not None:
                raise Problem(422, "unknown-provider-field" if problem["code"] == "unknown_field" else "not-writable",
                              f"{problem['message']}.", _hint(problem), problems=[problem])
        async with ctx.sessions.begin() as session:
            await put_override(session, tenant_id, kind, key, body.provider_field)
        return JSONResponse(_view(tenant_id, await _current(request, tenant_id, driver)))


def _hint(problem: dict[str, Any]) -> str | None:
    suggestions = problem.get("suggestions")
    return f"Closest fields: {', '.join(suggestions)}." if suggestions else None


@document(auth="operator", errors={404: "No such tenant, kind or override"})
async def remove(request: Request) -> Response:
    """Delete an override: the key goes back to the driver's default (or unmapped)."""
    tenant_id, _ = await _tenant(request)
    kind, key = _kind_and_key(request)
    async with context_of(request).sessions.begin() as session:
        if not await delete_override(session, tenant_id, kind, key):
            raise Problem(404, "not-found", "No such override.")
    return Response(status_code=204)


@document(responses={200: ValidationReport}, auth="operator",
          errors={404: "No such tenant", 409: "The CRM is not connected", 502: "The CRM refused our credentials",
                  503: "The CRM is not answering"})
async def validate(request: Request) -> JSONResponse:
    """Introspect the CRM now: mapped fields it lacks (with the closest real ones), read-only write targets, and
    required fields no mapping fills, per object. The snapshot feeds tool schemas and value checks."""
    tenant_id, actor = await _tenant(request)
    async with _open(request, tenant_id, actor) as driver:
        objects = sorted(driver.supported_objects - {CrmObject.NOTE})
        mapping = await introspect(context_of(request).sessions, tenant_id, driver, objects)
    return JSONResponse(report(mapping, [o.value for o in objects]))


@document(request=PreviewBody, responses={200: Preview}, auth="operator",
          errors={404: "No such tenant", 422: "Fields the mapping refuses (each named, with suggestions)"})
async def preview(request: Request) -> JSONResponse:
    """What a sample record would be written to the CRM as (no CRM call; the last introspection's types)."""
    tenant_id, _ = await _tenant(request)
    body = PreviewBody.model_validate(await read_json(request, 65_536))
    async with context_of(request).sessions() as session:
        tenant = await session.get(Tenant, tenant_id)
        assert tenant is not None
        mapping = await load_mapping(session, tenant_id, _driver_class(tenant))
    try:
        payload = engine.to_provider(mapping, body.object, body.fields)
    except UnmappedFieldsError as exc:
        raise mapping_problem(exc) from None
    return JSONResponse({"object": body.object.value, "payload": payload, "version": mapping.version})


routes = [
    Route(PREFIX, show, methods=["GET"]),
    Route(PREFIX + "/validate", validate, methods=["POST"]),
    Route(PREFIX + "/preview", preview, methods=["POST"]),
    Route(PREFIX + "/{kind}/{key}", put, methods=["PUT"]),
    Route(PREFIX + "/{kind}/{key}", remove, methods=["DELETE"]),
]
