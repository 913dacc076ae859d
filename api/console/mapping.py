"""The field-mapping page: the tenant's introspected CRM fields beside our canonical keys, the effective mapping
(defaults + overrides) with edit, a check against the CRM, a sample record's preview, and the installer's status.

Every action calls the service functions of the JSON operator routes (`api/routes/mapping.py`:
`set_override`, `remove_override`, `validate_mapping`, `preview_payload`; `api/routes/install.py`:
`install_view`, `run_installer`), so their checks are the only ones: a refusal (an unknown CRM field with the
closest real ones, a value the field cannot hold) comes back as their `Problem` and is shown as sentences, with
what the operator typed put back in the form.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from api.console.mapping_view import KIND_CHOICES, OBJECTS, labelled, objects_of, other_entries, sample_fields
from api.console.web import Operator, form_of, message_of, page, render, temporal_ui_url
from api.context import context_of
from api.crm import driver_provider
from api.errors import Problem
from api.mapping_checks import report
from api.routes.install import InstallBody, install_view, run_installer
from api.routes.mapping import (
    OverrideBody,
    PreviewBody,
    mapping_view,
    preview_payload,
    remove_override,
    set_override,
    tenant_mapping,
    validate_mapping,
)
from drivers.registry import get_driver_class
from store.models import Tenant
from vault.connections import Actor

EDIT_FIELDS = ("kind", "key", "provider_field")


def _actor(operator: Operator) -> Actor:
    return Actor(type="platform_operator", id=operator.principal.subject, purpose="field mapping (console)")


async def _show(request: Request, *, status: int = 200, notice: str | None = None, error: str | None = None,
                edit: dict[str, str] | None = None, suggestions: list[tuple[str, str]] | None = None,
                sample: dict[str, str] | None = None, preview: dict[str, Any] | None = None,
                preview_problems: list[dict[str, Any]] | None = None, focus: str | None = None) -> Response:
    """The page; `focus`: the object whose keys and fields are shown (else the query's `object`, else the first)."""
    ctx = context_of(request)
    tenant: Tenant = request.state.tenant
    mapping = await tenant_mapping(ctx, tenant.id)
    installed = await install_view(ctx, tenant.id)
    supported = sorted(o.value for o in get_driver_class(tenant.provider).supported_objects)
    checks = report(mapping, supported) if mapping.schema else None
    entries = mapping_view(tenant.id, mapping)["entries"]
    edit = edit or {name: request.query_params.get(name, "") for name in EDIT_FIELDS}
    objects = objects_of(mapping, entries, supported, checks)
    wanted = focus or request.query_params.get("object", "")
    shown = next((o for o in objects if o.name == wanted), objects[0] if objects else None)
    return render(
        request, "mapping.html", status, tenant=tenant, active="Field mapping",
        temporal_url=temporal_ui_url(ctx, tenant.id), notice=notice, error=error,
        version=mapping.version, objects=objects, shown=shown, checks=checks,
        others=other_entries(entries), kinds=KIND_CHOICES, edit=edit, verify=edit.get("verify", "on") == "on",
        suggestions=suggestions or [], field_names=sorted({n for fs in mapping.schema.values() for n in fs}),
        canonical_keys=sorted(mapping.write), sample_objects=[o for o in OBJECTS if o in supported],
        sample=sample or {"object": "lead", "fields": ""}, preview=preview, preview_problems=preview_problems or [],
        install=installed)


@page
async def mapping_page(request: Request, operator: Operator) -> Response:
    return await _show(request)


@page
async def save_override(request: Request, operator: Operator) -> Response:
    """Map a canonical key to a CRM field (both directions when asked), checked against the CRM first."""
    ctx = context_of(request)
    tenant: Tenant = request.state.tenant
    posted = form_of(request)
    edit = {name: posted.get(name, "").strip() for name in EDIT_FIELDS}
    edit["verify"] = "on" if posted.get("verify") == "on" else "off"
    kinds = edit["kind"].split(",") if edit["kind"] in KIND_CHOICES else [edit["kind"]]
    try:
        body = OverrideBody.model_validate({"provider_field": edit["provider_field"], "verify": edit["verify"] == "on"})
        for kind in kinds:
            await set_override(ctx, driver_provider(request), tenant.id, _actor(operator), kind, edit["key"], body)
    except (ValidationError, Problem) as exc:
        status = exc.status if isinstance(exc, Problem) else 422
        return await _show(request, status=status, error=message_of(exc), edit=edit, focus=_object(edit["key"]),
                           suggestions=await _suggestions(request, exc, edit["key"]))
    how = KIND_CHOICES.get(edit["kind"], edit["kind"])
    return await _show(request, notice=f"Mapped {edit['key']} to {body.provider_field} ({how}).",
                       focus=_object(edit["key"]))


def _object(key: str) -> str:
    return key.partition(".")[0]


async def _suggestions(request: Request, exc: Exception, key: str) -> list[tuple[str, str]]:
    """The closest real CRM fields a refusal named, with their labels (the page offers each as a fix)."""
    if not isinstance(exc, Problem):
        return []
    names = [name for problem in exc.extra.get("problems", []) for name in problem.get("suggestions", [])]
    if not names:
        return []
    mapping = await tenant_mapping(context_of(request), request.state.tenant.id)
    return labelled(names, mapping, _object(key))


@page
async def remove(request: Request, operator: Operator) -> Response:
    """Back to the driver's default for the posted kinds of one key."""
    tenant: Tenant = request.state.tenant
    posted = form_of(request)
    key, kinds = posted.get("key", ""), posted.get("kind", "")
    try:
        for kind in kinds.split(","):
            await remove_override(context_of(request), tenant.id, kind, key)
    except Problem as exc:
        return await _show(request, status=exc.status, error=message_of(exc), focus=_object(key))
    return await _show(request, notice=f"Removed the override of {key}: the default applies again.",
                       focus=_object(key))


@page
async def check_against_crm(request: Request, operator: Operator) -> Response:
    """Introspect the CRM now (every object it supports); the page then shows what needs fixing."""
    tenant: Tenant = request.state.tenant
    try:
        checked = await validate_mapping(context_of(request), driver_provider(request), tenant.id, _actor(operator))
    except Problem as exc:
        return await _show(request, status=exc.status, error=message_of(exc))
    if checked["ok"]:
        return await _show(request, notice="Checked against the CRM just now: every mapped field exists and can be "
                                           "written, and no field the CRM requires is left unmapped.")
    return await _show(request, error="Checked against the CRM just now: some mappings need fixing (see “Check "
                                      "against the CRM” below).")


@page
async def preview(request: Request, operator: Operator) -> Response:
    """The CRM payload a sample record becomes (no CRM call). Posted, not a query: a sample may look like a
    customer's details, which must not land in URLs and access logs."""
    tenant: Tenant = request.state.tenant
    posted = form_of(request)
    sample = {"object": posted.get("object", ""), "fields": posted.get("fields", "")}
    try:
        body = PreviewBody.model_validate({"object": sample["object"], "fields": sample_fields(sample["fields"])})
        shown = await preview_payload(context_of(request), tenant.id, body)
    except ValueError as exc:  # a line that is not `key: value` (pydantic's ValidationError is one too)
        text = message_of(exc) if isinstance(exc, ValidationError) else str(exc)
        return await _show(request, status=422, error=text, sample=sample, focus=sample["object"])
    except Problem as exc:
        return await _show(request, status=exc.status, error=message_of(exc), sample=sample,
                           preview_problems=list(exc.extra.get("fields", [])), focus=sample["object"])
    return await _show(request, sample=sample, preview=shown, focus=sample["object"])


@page
async def install(request: Request, operator: Operator) -> Response:
    """Run the installer now (creates our exactly-once fields where the CRM lets us)."""
    tenant: Tenant = request.state.tenant
    accept = form_of(request).get("accept_degraded") == "on"
    actor = Actor(type="platform_operator", id=operator.principal.subject, purpose="install CRM fields (console)")
    try:
        done = await run_installer(context_of(request), driver_provider(request), tenant.id, actor,
                                   InstallBody(accept_degraded=accept))
    except Problem as exc:
        return await _show(request, status=exc.status, error=message_of(exc))
    async with context_of(request).sessions() as session:  # the run may have changed the tenant's status
        request.state.tenant = await session.get(Tenant, tenant.id, populate_existing=True) or tenant
    messages = {"complete": "The installer ran: every field exactly-once create needs is in the CRM.",
                "degraded": "The installer ran; the fields are still missing. The tenant runs degraded (without "
                            "exactly-once create) until they exist.",
                "manual_steps": "The installer ran; an admin must still create the fields listed below."}
    state = str(done["state"])
    if state == "complete":
        return await _show(request, notice=messages[state])
    return await _show(request, error=messages.get(state, f"The installer ran: {state}."))
