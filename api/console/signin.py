"""Console sign-in and sign-out: an operator credential (an operator JWT) exchanged for a session cookie."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
from starlette.requests import Request
from starlette.responses import Response

from api.auth import decode_token
from api.console.web import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    Operator,
    cookie,
    message_of,
    new_login_token,
    page,
    read_form,
    redirect,
    render,
    same_token,
    signed_in,
)
from api.context import context_of
from api.errors import Problem
from store import console_sessions
from store.base import utcnow
from store.models import AuditLog

SESSION_HOURS = 8  # a working day; never longer than the credential itself


def _next(value: str | None) -> str:
    """Only a console path: never an absolute or protocol-relative URL (no open redirect)."""
    if value and value.startswith("/console/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/console/"


def _login_page(request: Request, *, status: int = 200, error: str | None = None) -> Response:
    token = new_login_token()
    response = render(request, "login.html", status, login_token=token, error=error,
                      next=_next(request.query_params.get("next")))
    cookie(response, LOGIN_COOKIE, token, max_age=3600)
    return response


async def login_form(request: Request) -> Response:
    if await signed_in(request) is not None:
        return redirect(_next(request.query_params.get("next")))
    return _login_page(request)


async def login(request: Request) -> Response:
    form = await read_form(request)
    if not same_token(form.get("login_token"), request.cookies.get(LOGIN_COOKIE, "")) or \
            not request.cookies.get(LOGIN_COOKIE):
        return _login_page(request, status=403, error="The sign-in form expired; please try again.")
    ctx = context_of(request)
    credential = form.get("credential", "").strip()
    try:
        principal = decode_token(ctx.settings, credential)
        if principal.role != "operator":
            raise Problem(403, "wrong-role", "This credential is not an operator's.")
    except Problem as exc:
        # The credential is not put back in the form: a secret is never echoed into a page.
        return _login_page(request, status=exc.status, error=f"Sign-in refused: {message_of(exc)}")
    # A session never outlives the credential that opened it (its signature and expiry were checked above).
    expires = utcnow() + timedelta(hours=SESSION_HOURS)
    claims = jwt.decode(credential, options={"verify_signature": False})
    if isinstance(claims.get("exp"), int | float):
        expires = min(expires, datetime.fromtimestamp(claims["exp"], UTC))
    async with ctx.sessions() as session, session.begin():
        previous = request.cookies.get(SESSION_COOKIE)
        if previous:  # signing in again ends the browser's earlier session
            await console_sessions.close_session(session, previous)
        token, _ = await console_sessions.open_session(session, operator=principal.subject,
                                                       tenant_id=principal.tenant_id, expires_at=expires)
        session.add(AuditLog(tenant_id=principal.tenant_id, actor_type="platform_operator",
                             actor_id=principal.subject[:200], action="console.sign_in", purpose="operator console",
                             details={"expires_at": expires.isoformat()}))
    target = _next(form.get("next"))
    if target == "/console/" and principal.tenant_id is not None:
        target = f"/console/t/{principal.tenant_id}/"
    response = redirect(target)
    cookie(response, SESSION_COOKIE, token, max_age=int((expires - utcnow()).total_seconds()))
    response.delete_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return response


@page
async def logout(request: Request, operator: Operator) -> Response:
    token = request.cookies.get(SESSION_COOKIE, "")
    async with context_of(request).sessions() as session, session.begin():
        await console_sessions.close_session(session, token)
        session.add(AuditLog(tenant_id=operator.pinned, actor_type="platform_operator",
                             actor_id=operator.principal.subject, action="console.sign_out",
                             purpose="operator console"))
    response = redirect("/console/login?signed_out=1")
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return response
