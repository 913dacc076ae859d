"""The connect page: the provider's OAuth button, its credential form (drawn from the driver's declaration),
and Test connection — all through the same `Connector` the JSON connect routes use.

The tenant goes `active` only when test_connection passes (the Connector's rule); a failure shows the
provider's reason and leaves it `pending`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import ValidationError
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from api.console import forms
from api.console.landing import FLASH_COOKIE, take_flash
from api.console.web import OAUTH_COOKIE, Operator, cookie, form_of, message_of, page, redirect, render, temporal_ui_url
from api.context import context_of
from api.errors import Problem
from api.routes.connect import connector, wake_mirror_if_active
from drivers.registry import get_driver_class
from store.models import Tenant, TenantCredential
from vault.connect import ConnectError, ConnectOutcome
from vault.connections import Actor


def _actor(operator: Operator) -> Actor:
    return Actor(type="platform_operator", id=operator.principal.subject, purpose="connect CRM (console)")


def _outcome_message(outcome: ConnectOutcome) -> tuple[str | None, str | None]:
    if outcome.status == "active":
        return "Connected: the test passed and the tenant is active.", None
    return None, f"The connection test failed: {outcome.reason or 'no reason given'}. The tenant stays pending."


async def _show(request: Request, *, status: int = 200, notice: str | None = None, error: str | None = None,
                kept: dict[str, str] | None = None, generated_secret: str | None = None) -> Response:
    ctx = context_of(request)
    tenant: Tenant = request.state.tenant
    async with ctx.sessions() as session:
        tenant = await session.get(Tenant, tenant.id, populate_existing=True) or tenant
        credential = (await session.execute(select(TenantCredential).where(
            TenantCredential.tenant_id == tenant.id, TenantCredential.provider == tenant.provider))).scalars().first()
    driver = get_driver_class(tenant.provider)
    form_cls = driver.credential_form
    extra_origins: list[str] = []
    if driver.oauth is not None:  # the OAuth start redirects to one of these consent pages (sandbox or not)
        pages = {driver.oauth_authorize_url(tenant.settings or {}), driver.oauth.authorize_url,
                 driver.oauth.sandbox_authorize_url or driver.oauth.authorize_url}
        extra_origins = sorted({f"{p.scheme}://{p.netloc}" for p in map(urlsplit, pages)})
    flash = take_flash(request)
    if flash:
        kind, _, text = flash.partition(":")
        if kind == "active":
            notice = "Connected through the provider's sign-in: the test passed and the tenant is active."
        elif kind == "pending":
            error = f"Connected, but the connection test failed: {text or 'no reason given'}. The tenant stays pending."
        else:
            error = f"The provider sign-in did not complete: {text}"
    response = render(
        request, "connect.html", status, tenant=tenant, credential=credential, active="Connect",
        temporal_url=temporal_ui_url(ctx, tenant.id), oauth=driver.oauth, sandbox_option=bool(
            driver.oauth and driver.oauth.sandbox_authorize_url),
        fields=forms.fields_of(form_cls) if form_cls else [], form_doc=(form_cls.__doc__ or "") if form_cls else "",
        kept=kept or {}, notice=notice, error=error, generated_secret=generated_secret,
        form_action=extra_origins)
    if flash:
        response.delete_cookie(FLASH_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return response


@page
async def connect_page(request: Request, operator: Operator) -> Response:
    return await _show(request)


@page
async def oauth_start(request: Request, operator: Operator) -> Response:
    tenant: Tenant = request.state.tenant
    sandbox = True if form_of(request).get("sandbox") == "on" else None
    try:
        url = await connector(request).start_oauth(tenant.id, _actor(operator), sandbox=sandbox)
    except ConnectError as exc:
        return await _show(request, status=exc.status, error=message_of(Problem(exc.status, exc.slug, exc.title,
                                                                                exc.detail)))
    response = redirect(url)
    cookie(response, OAUTH_COOKIE, str(tenant.id), max_age=900)  # the state's own lifetime is shorter
    return response


@page
async def credentials(request: Request, operator: Operator) -> Response:
    tenant: Tenant = request.state.tenant
    form_cls = get_driver_class(tenant.provider).credential_form
    posted = form_of(request)
    if form_cls is None:
        return await _show(request, status=400, error=f"{tenant.provider} does not take posted credentials.")
    body, problems = forms.body_from(form_cls, posted)
    kept = forms.kept_values(form_cls, posted)
    if problems:
        return await _show(request, status=422, error="Please correct the form. " + "; ".join(problems), kept=kept)
    try:
        outcome = await connector(request).connect_form(tenant.id, body, _actor(operator))
    except ValidationError as exc:
        return await _show(request, status=422, error=message_of(exc), kept=kept)
    except ConnectError as exc:
        return await _show(request, status=exc.status, kept=kept,
                           error=message_of(Problem(exc.status, exc.slug, exc.title, exc.detail)))
    await wake_mirror_if_active(request, outcome)
    notice, error = _outcome_message(outcome)
    return await _show(request, notice=notice, error=error, kept=kept if error else None,
                       generated_secret=outcome.generated_secret)


@page
async def test_connection(request: Request, operator: Operator) -> Response:
    tenant: Tenant = request.state.tenant
    try:
        outcome = await connector(request).retest(tenant.id, _actor(operator))
    except ConnectError as exc:
        return await _show(request, status=exc.status,
                           error=message_of(Problem(exc.status, exc.slug, exc.title, exc.detail)))
    await wake_mirror_if_active(request, outcome)
    notice, error = _outcome_message(outcome)
    return await _show(request, notice=notice, error=error)

