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
from api.context import AppContext, context_of
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
from vault.connections import Actor, DriverProvider

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


# ----- the service functions: the JSON routes below and the console's mapping page both call these -----

def check_kind_and_key(kind: str, key: str) -> None:
    """A known kind (else 404) and a key of its form (else 422 `invalid-key`)."""
    if kind not in engine.KINDS:
        raise Problem(404, "not-found", f"No mapping kind {kind[:20]!r}.", f"Kinds: {', '.join(engine.KINDS)}.")
    pattern = _OBJECT_KEY if kind == "object" else _KEY
    if kind != "trigger" and not pattern.match(key):
        raise Problem(422, "invalid-key", "Not a canonical key.",
                      "Use object.name (lead.budget_max), or an object name for kind object.")
    if kind == "trigger" and not re.match(r"^[A-Za-z0-9_.]{1,128}$", key):
        raise Problem(422, "invalid-key", "Not a trigger field name.")


@asynccontextmanager
async def _open(drivers: DriverProvider, tenant_id: uuid.UUID, actor: Actor) -> AsyncIterator[BaseDriver]:
    """The tenant's driver; no connected CRM or a CRM failure is the same problem the tool routes answer."""
    try:
        async with drivers.open(tenant_id, actor) as driver:
            yield driver
    except (LookupError, DriverError) as exc:
        raise failure_problem(classify(exc)) from None


def mapping_view(tenant_id: uuid.UUID, mapping: engine.TenantMapping) -> dict[str, Any]:
    """The effective mapping as `MappingView` (every entry marked default or override)."""
    overridden = {(kind, key) for kind, key, _ in mapping.overrides}
    entries = [{"kind": kind, "key": key, "provider_field": field,
                "source": "override" if (kind, key) in overridden else "default"}
               for kind, table in (("write", mapping.write), ("read", mapping.read), ("object", mapping.objects),
                                   ("trigger", mapping.triggers))
               for key, field in sorted(table.items())]
    return {"tenant_id": str(tenant_id), "provider": mapping.provider, "version": mapping.version,
            "entries": entries, "introspected": sorted(mapping.schema)}


async def tenant_mapping(ctx: AppContext, tenant_id: uuid.UUID) -> engine.TenantMapping:
    """The tenant's effective mapping with its last introspected schema (404 when there is no such tenant)."""
    async with ctx.sessions() as session:
        tenant = await session.get(Tenant, tenant_id)
        if tenant is None:
            raise Problem(404, "not-found", "No such tenant.")
        return await load_mapping(session, tenant_id, get_driver_class(tenant.provider))


async def set_override(ctx: AppContext, drivers: DriverProvider, tenant_id: uuid.UUID, actor: Actor, kind: str,
                       key: str, body: OverrideBody) -> engine.TenantMapping:
    """Map `key` to `body.provider_field`: a `write`/`read` target is first checked against the CRM's live field
    list (422 `unknown-provider-field` with the closest real names, or `not-writable`) unless `verify` is off."""
    check_kind_and_key(kind, key)
    async with _open(drivers, tenant_id, actor) as driver:
        if body.verify and kind in ("write", "read"):
            obj = key.partition(".")[0]
            mapping = await introspect(ctx.sessions, tenant_id, driver, [CrmObject(obj)])
            problem = field_problem(mapping, obj, key, body.provider_field, kind)
            if problem is not None:
                raise Problem(422, "unknown-provider-field" if problem["code"] == "unknown_field" else "not-writable",
                              f"{problem['message']}.", _hint(problem), problems=[problem])
        async with ctx.sessions.begin() as session:
            await put_override(session, tenant_id, kind, key, body.provider_field)
        async with ctx.sessions() as session:
            return await load_mapping(session, tenant_id, driver)


def _hint(problem: dict[str, Any]) -> str | None:
    suggestions = problem.get("suggestions")
    return f"Closest fields: {', '.join(suggestions)}." if suggestions else None


async def remove_override(ctx: AppContext, tenant_id: uuid.UUID, kind: str, key: str) -> None:
    """Back to the driver's default (404 when there was no such override)."""
    check_kind_and_key(kind, key)
    async with ctx.sessions.begin() as session:
        if not await delete_override(session, tenant_id, kind, key):
            raise Problem(404, "not-found", "No such override.")


async def validate_mapping(ctx: AppContext, drivers: DriverProvider, tenant_id: uuid.UUID, actor: Actor
                           ) -> dict[str, Any]:
    """Introspect every object the CRM supports now, keep the snapshot, and report (`ValidationReport`)."""
    async with _open(drivers, tenant_id, actor) as driver:
        objects = sorted(driver.supported_objects - {CrmObject.NOTE})
        mapping = await introspect(ctx.sessions, tenant_id, driver, objects)
    return report(mapping, [o.value for o in objects])


async def preview_payload(ctx: AppContext, tenant_id: uuid.UUID, body: PreviewBody) -> dict[str, Any]:
    """The CRM payload a sample record becomes (`Preview`); refused content is the tool routes' 422."""
    mapping = await tenant_mapping(ctx, tenant_id)
    try:
        payload = engine.to_provider(mapping, body.object, body.fields)
    except UnmappedFieldsError as exc:
        raise mapping_problem(exc) from None
    return {"object": body.object.value, "payload": payload, "version": mapping.version}


# ----- the JSON routes -----

@document(responses={200: MappingView}, auth="operator", errors={404: "No such tenant (for this operator)"})
async def show(request: Request) -> JSONResponse:
    """The effective mapping: the driver's defaults and the tenant's overrides, per kind, with its version."""
    tenant_id, _ = await _tenant(request)
    return JSONResponse(mapping_view(tenant_id, await tenant_mapping(context_of(request), tenant_id)))


@document(request=OverrideBody, responses={200: MappingView}, auth="operator",
          errors={404: "No such tenant or kind", 422: "Not a canonical key, or a field the CRM does not have",
                  409: "The CRM is not connected"})
async def put(request: Request) -> JSONResponse:
    """Map a canonical key to a provider field; checked against the CRM's live field list unless `verify` is false."""
    tenant_id, actor = await _tenant(request)
    kind, key = request.path_params["kind"], request.path_params["key"]
    check_kind_and_key(kind, key)  # a wrong path is named before the body is read
    body = OverrideBody.model_validate(await read_json(request, 16_384))
    mapping = await set_override(context_of(request), driver_provider(request), tenant_id, actor, kind, key, body)
    return JSONResponse(mapping_view(tenant_id, mapping))


@document(auth="operator", errors={404: "No such tenant, kind or override"})
async def remove(request: Request) -> Response:
    """Delete an override: the key goes back to the driver's default (or unmapped)."""
    tenant_id, _ = await _tenant(request)
    await remove_override(context_of(request), tenant_id, request.path_params["kind"], request.path_params["key"])
    return Response(status_code=204)


@document(responses={200: ValidationReport}, auth="operator",
          errors={404: "No such tenant", 409: "The CRM is not connected", 502: "The CRM refused our credentials",
                  503: "The CRM is not answering"})
async def validate(request: Request) -> JSONResponse:
    """Introspect the CRM now: mapped fields it lacks (with the closest real ones), read-only write targets, and
    required fields no mapping fills, per object. The snapshot feeds tool schemas and value checks."""
    tenant_id, actor = await _tenant(request)
    return JSONResponse(await validate_mapping(context_of(request), driver_provider(request), tenant_id, actor))


@document(request=PreviewBody, responses={200: Preview}, auth="operator",
          errors={404: "No such tenant", 422: "Fields the mapping refuses (each named, with suggestions)"})
async def preview(request: Request) -> JSONResponse:
    """What a sample record would be written to the CRM as (no CRM call; the last introspection's types)."""
    tenant_id, _ = await _tenant(request)
    body = PreviewBody.model_validate(await read_json(request, 65_536))
    return JSONResponse(await preview_payload(context_of(request), tenant_id, body))


routes = [
    Route(PREFIX, show, methods=["GET"]),
    Route(PREFIX + "/validate", validate, methods=["POST"]),
    Route(PREFIX + "/preview", preview, methods=["POST"]),
    Route(PREFIX + "/{kind}/{key}", put, methods=["PUT"]),
    Route(PREFIX + "/{kind}/{key}", remove, methods=["DELETE"]),
]
