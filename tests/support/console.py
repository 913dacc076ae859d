"""A served console for browser tests: the real app (uvicorn on loopback), the real worker, relay and vault,
and provider sandboxes on loopback; Playwright drives Debian's Chromium (no browser download: its executable).

Screenshots go to `CRM_CONSOLE_SCREENSHOTS` (default `artifacts/console/`, kept out of git); a reviewed set is
committed under `docs/console/`.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import uvicorn
from playwright.async_api import Page, expect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from temporalio.client import Client

import worker as composition
from api.app import create_app
from api.auth import mint_token
from api.context import AppContext
from api.relay import running
from api.temporal import TemporalGateway
from sandboxes import hubspot as hubspot_sandbox
from sandboxes import tekmetric as tekmetric_sandbox
from sandboxes.serve import serve_in_task
from settings import OAuthClientSettings, Settings
from tests.support.lifecycle import relay_for
from tests.support.ports import free_port
from tests.support.tenants import create_tenant
from workflows.types import MirrorPolicy

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("CRM_CONSOLE_SCREENSHOTS", ROOT / "artifacts" / "console"))
WAIT = 30_000  # ms: how long a page may take to show what the server did (a poll, not a timing assertion)
expect.set_options(timeout=15_000)  # a loaded CI machine: every expectation polls up to 15 s before failing
# A failed CRM write waits an hour before its next attempt: only an operator's redrive retries it sooner.
PATIENT = MirrorPolicy(first_backoff=timedelta(hours=1), max_backoff=timedelta(hours=1))


def chromium_path() -> str:
    """Debian's Chromium (`apt-get install chromium`; .ci/run installs it). Playwright's own download cannot work."""
    path = os.environ.get("CRM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        raise RuntimeError("Chromium is not installed: apt-get install -y chromium (.ci/run does)")
    return path


@dataclass
class Console:
    base_url: str
    settings: Settings
    ctx: AppContext
    hubspot: Any  # HubSpotState
    tekmetric: Any  # TekmetricState
    hubspot_tenant: uuid.UUID
    tekmetric_tenant: uuid.UUID
    other_tenant: uuid.UUID  # another tenant, for cross-tenant refusals
    run: str  # the suffix of this run's tenant names (the database is shared by the whole test session)

    def operator_token(self, tenant: uuid.UUID | None = None, subject: str = "ama.manager") -> str:
        return mint_token(self.settings, subject=subject, role="operator", tenant_id=tenant)

    def agent_headers(self, tenant: uuid.UUID) -> dict[str, str]:
        return {"Authorization": f"Bearer {mint_token(self.settings, subject='agent', role='agent', tenant_id=tenant)}"}


@asynccontextmanager
async def _serve(app: Starlette, port: int) -> AsyncIterator[None]:
    """The app on loopback in this event loop (the lifespan's work, the relay, is run by the caller)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"the console did not start on port {port}")
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def served_console(settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
                         client: Client, task_queue: str) -> AsyncIterator[Console]:
    async with AsyncExitStack() as stack:
        hubspot_app, tekmetric_app = hubspot_sandbox.create_app(), tekmetric_sandbox.create_app()
        hubspot_url = await stack.enter_async_context(serve_in_task(hubspot_app))
        tekmetric_url = await stack.enter_async_context(serve_in_task(tekmetric_app))
        hubspot, tekmetric = hubspot_app.state.sandbox, tekmetric_app.state.sandbox
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        clients = {"hubspot": OAuthClientSettings(client_id=hubspot.tokens.client_id,
                                                  client_secret=hubspot.tokens.client_secret)}
        settings = settings.model_copy(update={
            "public_base_url": base_url, "oauth_clients": clients,
            "temporal": settings.temporal.model_copy(update={"task_queue": task_queue})})
        run = uuid.uuid4().hex[:6]
        hubspot_tenant = await create_tenant(
            sessions, provider="hubspot", status="pending", name=f"Acme Realty {run}",
            settings={"base_url": hubspot_url, "authorize_url": f"{hubspot_url}/oauth/authorize",
                      "token_url": f"{hubspot_url}/oauth/v3/token", "portal_id": hubspot.portal_id})
        tekmetric_tenant = await create_tenant(
            sessions, provider="tekmetric", status="pending", name=f"Brake Bros {run}",
            settings={"base_url": tekmetric_url, "token_url": tekmetric_url + tekmetric_sandbox.TOKEN_PATH})
        other_tenant = await create_tenant(sessions, provider="hubspot", name=f"Other Clinic {run}")
        relay = relay_for(engine, sessions, client, task_queue, tenants=[hubspot_tenant, tekmetric_tenant],
                          policy=PATIENT)
        ctx = AppContext(settings=settings, engine=engine, sessions=sessions,
                         temporal=TemporalGateway(settings.temporal, client), extras={"relay": relay})
        worker = composition.build_worker(client, settings, activities=composition.build_activities(settings, engine),
                                          task_queue=task_queue)
        await stack.enter_async_context(worker)
        await stack.enter_async_context(running(relay))
        await stack.enter_async_context(_serve(create_app(context=ctx), port))
        SHOTS.mkdir(parents=True, exist_ok=True)
        try:
            yield Console(base_url, settings, ctx, hubspot, tekmetric, hubspot_tenant, tekmetric_tenant, other_tenant,
                          run)
        finally:  # what the app's lifespan closes: pools and clients its routes built on first use
            for name, extra in list(ctx.extras.items()):
                if name != "relay" and hasattr(extra, "aclose"):
                    await extra.aclose()


async def shot(page: Page, name: str) -> None:
    """Save the page, after checking that every control on it has a label (what a screen reader announces)."""
    unlabelled = await page.evaluate("""() => [...document.querySelectorAll(
        'input:not([type=hidden]), select, textarea')].filter(e => e.labels.length === 0).map(e => e.name)""")
    assert unlabelled == [], f"{name}: controls without a label: {unlabelled}"
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def sign_in(page: Page, console: Console, token: str) -> None:
    await page.goto(f"{console.base_url}/console/")
    await expect(page).to_have_url(re.compile(r"/console/login"))
    await page.get_by_label("Operator credential").fill(token)
    await page.get_by_role("button", name="Sign in").click()
