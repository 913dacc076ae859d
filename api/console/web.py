"""The console's plumbing: templates, the signed-in operator, CSRF, posted forms and problems as messages.

Pages are server-rendered Jinja2 (autoescaped) and work without JavaScript; the only script is the vendored
htmx (static/htmx.min.js, 0BSD), used to refresh a table while something is in flight.

Sign-in: the operator posts an operator credential (an operator JWT, as the JSON API takes) once; the console
answers with its own session cookie `__Host-crm_console` (Secure, HttpOnly, SameSite=Lax, Path=/), stored only
as a hash (store/console_sessions.py). Lax, not Strict: the provider's OAuth redirect must land back signed in.
Every state-changing form carries the session's CSRF token, compared in constant time; the sign-in form
itself is guarded by a double-submit cookie. The tenant a page acts for is the path's, checked against the
operator's credential like the JSON routes do (a pinned operator sees only its tenant; others get a 404).
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from api.auth import Principal
from api.context import AppContext, context_of
from api.errors import Problem
from store import console_sessions
from store.models import Tenant

HERE = Path(__file__).parent
SESSION_COOKIE = "__Host-crm_console"
LOGIN_COOKIE = "__Host-crm_console_login"  # double-submit token for the sign-in form (no session yet)
OAUTH_COOKIE = "__Host-crm_console_oauth"  # the tenant whose OAuth flow the console started: where to land back
MAX_FORM_BYTES = 65_536
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                        trim_blocks=True, lstrip_blocks=True)


@dataclass(frozen=True)
class Operator:
    """The signed-in operator: its principal (as the JSON API's) and the session's CSRF token."""

    principal: Principal
    csrf_token: str

    @property
    def pinned(self) -> uuid.UUID | None:
        return self.principal.tenant_id


def render(request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
    operator: Operator | None = getattr(request.state, "operator", None)
    html = templates.get_template(name).render(request=request, operator=operator, **values)
    # No inline script or style anywhere: pages load /console/static only. Forms post to the console, except
    # the OAuth start, whose redirect goes on to the provider's consent page (its origin is named).
    targets = " ".join(["'self'", *values.get("form_action", [])])
    csp = (f"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; "
           f"form-action {targets}")
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS | {"Content-Security-Policy": csp})


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def cookie(response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="lax")


def message_of(exc: Exception) -> str:
    """A readable sentence for a problem or a validation error (never the submitted values)."""
    if isinstance(exc, Problem):
        parts = [exc.title, exc.detail or ""]
        parts += [str(error.get("msg", "")) for error in exc.extra.get("errors", []) if isinstance(error, dict)]
        return " ".join(part for part in parts if part).strip()
    if isinstance(exc, ValidationError):
        fields = [f"{'.'.join(str(p) for p in error['loc']) or 'form'}: {error['msg']}"
                  for error in exc.errors(include_input=False)]
        return "Please correct the form. " + "; ".join(fields)
    return "Something went wrong."


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form (parsed by hand: Starlette's form parser needs python-multipart, which we do not)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise Problem(415, "unsupported-media-type", "Forms are posted urlencoded.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise Problem(413, "body-too-large", f"The form exceeds {MAX_FORM_BYTES} bytes.")
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200))
    except (UnicodeDecodeError, ValueError):
        raise Problem(400, "malformed-form", "The form could not be read.") from None


def same_token(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


async def signed_in(request: Request) -> Operator | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    async with context_of(request).sessions() as session:
        found = await console_sessions.find_session(session, token)
    if found is None:
        return None
    return Operator(Principal(subject=found.operator, role="operator", tenant_id=found.tenant_id), found.csrf_token)


def new_login_token() -> str:
    return secrets.token_urlsafe(24)


Handler = Callable[[Request, Operator], Awaitable[Response]]


def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A console page: signed in (else to the sign-in page), a posted form's CSRF token checked, the path's
    tenant one the operator may act for (else 404: a pinned operator must not learn other tenants exist)."""

    async def endpoint(request: Request) -> Response:
        operator = await signed_in(request)
        if operator is None:
            if request.method != "GET":
                return render(request, "error.html", 401, message="Your session has ended; sign in again.")
            return redirect(f"/console/login?next={quote(request.url.path)}")
        request.state.operator = operator
        try:
            if request.method == "POST":
                request.state.form = await read_form(request)
                if not same_token(request.state.form.get("csrf_token"), operator.csrf_token):
                    return render(request, "error.html", 403,
                                  message="This form has expired or did not come from the console. Reload the "
                                          "page and try again.")
            tenant_id = request.path_params.get("tenant_id")
            if tenant_id is not None:
                tenant = await tenant_for(context_of(request), operator, tenant_id)
                if tenant is None:
                    return render(request, "error.html", 404, message="No such tenant.")
                request.state.tenant = tenant
            return await handler(request, operator)
        except Problem as exc:  # a refusal the page did not handle itself (a service's, or an unreadable form)
            return render(request, "error.html", exc.status, message=message_of(exc))

    return endpoint


async def tenant_for(ctx: AppContext, operator: Operator, tenant_id: uuid.UUID) -> Tenant | None:
    if not operator.principal.may_act_for(tenant_id):
        return None
    async with ctx.sessions() as session:
        return await session.get(Tenant, tenant_id)


def form_of(request: Request) -> dict[str, str]:
    form: dict[str, str] = request.state.form
    return form


def _temporal_ui(ctx: AppContext) -> str:
    temporal = ctx.settings.temporal
    base = temporal.ui_url or f"http://localhost:{temporal.ui_port}"
    return f"{base.rstrip('/')}/namespaces/{quote(temporal.namespace, safe='')}/workflows"


def temporal_ui_url(ctx: AppContext, tenant_id: uuid.UUID) -> str:
    """The tenant's runs in the Temporal UI (filtered on the CrmTenant search attribute)."""
    query = quote(f'CrmTenant="{tenant_id}"', safe="")
    return f"{_temporal_ui(ctx)}?query={query}"


def temporal_workflow_url(ctx: AppContext, workflow_id: str) -> str:
    """One workflow's runs in the Temporal UI."""
    return f"{_temporal_ui(ctx)}/{quote(workflow_id, safe='')}"
