"""Console sign-in over plain HTTP (no browser): cookie flags, what a sign-in refuses, where it may send you,
how long a session lasts, and the page headers."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import create_app
from api.auth import mint_token
from api.context import AppContext
from store.console_sessions import ConsoleSession, token_hash
from store.models import AuditLog


@pytest_asyncio.fixture(loop_scope="session")
async def browser(ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    """A cookie-keeping client on https (the console's cookies are Secure)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(context=ctx)),
                                 base_url="https://console.test") as client:
        yield client


async def _login_form(browser: httpx.AsyncClient, next_: str = "") -> str:
    page = await browser.get("/console/login", params={"next": next_} if next_ else None)
    assert page.status_code == 200
    match = re.search(r'name="login_token" value="([^"]+)"', page.text)
    assert match
    return match.group(1)


async def _sign_in(browser: httpx.AsyncClient, credential: str, next_: str = "") -> httpx.Response:
    browser.cookies.clear()  # a fresh visitor each time
    token = await _login_form(browser, next_)
    return await browser.post("/console/login", data={"credential": credential, "login_token": token,
                                                      "next": next_})


async def test_sign_in_sets_a_secure_httponly_lax_cookie_and_a_strict_page_policy(
        browser: httpx.AsyncClient, ctx: AppContext) -> None:
    answer = await _sign_in(browser, mint_token(ctx.settings, subject="op", role="operator", tenant_id=None))
    assert answer.status_code == 303 and answer.headers["location"] == "/console/"
    set_cookie = next(v for k, v in answer.headers.multi_items()
                      if k == "set-cookie" and v.startswith("__Host-crm_console="))
    assert all(flag in set_cookie for flag in ("Secure", "HttpOnly", "SameSite=lax", "Path=/"))
    page = await browser.get("/console/")
    assert page.status_code == 200
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'self': no inline script
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    htmx = await browser.get("/console/static/htmx.min.js")
    assert htmx.status_code == 200 and "htmx" in htmx.text[:2000]


async def test_agent_tokens_expired_tokens_and_garbage_are_refused(browser: httpx.AsyncClient,
                                                                   ctx: AppContext) -> None:
    tenant = uuid.uuid4()
    for credential, why in [
        (mint_token(ctx.settings, subject="a", role="agent", tenant_id=tenant), "not an operator"),
        (mint_token(ctx.settings, subject="o", role="operator", tenant_id=None, ttl=timedelta(seconds=-5)), "expired"),
        ("garbage", "not valid"),
    ]:
        answer = await _sign_in(browser, credential)
        assert answer.status_code in (401, 403), why
        assert "Sign-in refused" in answer.text and credential not in answer.text
        assert "__Host-crm_console=" not in answer.headers.get("set-cookie", "")


async def test_next_is_only_ever_a_console_path(browser: httpx.AsyncClient, ctx: AppContext) -> None:
    operator = mint_token(ctx.settings, subject="op", role="operator", tenant_id=None)
    for target in ("https://evil.example/", "//evil.example/console/", "/api/tenant/forget"):
        answer = await _sign_in(browser, operator, target)
        assert answer.headers["location"] == "/console/", target
    answer = await _sign_in(browser, operator, "/console/t/abc/sync")
    assert answer.headers["location"] == "/console/t/abc/sync"


async def test_a_session_never_outlives_its_credential(browser: httpx.AsyncClient, ctx: AppContext,
                                                       sessions: async_sessionmaker[AsyncSession]) -> None:
    credential = mint_token(ctx.settings, subject="short", role="operator", tenant_id=None,
                            ttl=timedelta(minutes=10))
    answer = await _sign_in(browser, credential)
    cookie = browser.cookies.get("__Host-crm_console")
    assert answer.status_code == 303 and cookie
    async with sessions() as session:
        row = (await session.execute(select(ConsoleSession).where(
            ConsoleSession.token_hash == token_hash(cookie)))).scalar_one()
    assert row.expires_at <= datetime.now(UTC) + timedelta(minutes=10)
    assert row.operator == "short" and row.tenant_id is None
    async with sessions() as session:
        audited = (await session.execute(select(AuditLog).where(
            AuditLog.action == "console.sign_in", AuditLog.actor_id == "short"))).scalars().all()
    assert len(audited) == 1 and audited[0].actor_type == "platform_operator"


async def test_a_signed_out_visitor_is_sent_to_sign_in_and_a_post_is_refused(browser: httpx.AsyncClient) -> None:
    tenant = uuid.uuid4()
    page = await browser.get(f"/console/t/{tenant}/incidents")
    assert page.status_code == 303 and page.headers["location"] == f"/console/login?next=/console/t/{tenant}/incidents"
    posted = await browser.post(f"/console/t/{tenant}/incidents/redrive", data={"csrf_token": "x"})
    assert posted.status_code == 401
