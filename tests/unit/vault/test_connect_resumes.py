"""A connect that makes the tenant active again wakes its mirroring parked on auth_error (through the connect
routes, not only the helper): the operator's reconnect is what "the connection is fixed" means. A connect whose
test fails wakes nothing; a Temporal unreachable at that moment (a restart) delays the wake-up, never the connect,
and does not lose it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.app import create_app
from api.auth import mint_token
from api.context import AppContext
from api.routes import connect
from api.temporal import TemporalGateway
from sandboxes import tekmetric
from settings import Settings, TemporalSettings
from tests.unit.vault.support import make_tenant, make_vault
from vault.provider import VaultDriverProvider


@pytest.mark.parametrize("good_secret", [True, False])
async def test_a_form_connect_that_activates_wakes_parked_mirroring(
        good_secret: bool, settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        monkeypatch: pytest.MonkeyPatch) -> None:
    app = tekmetric.create_app()
    state = app.state.sandbox
    transport = httpx.ASGITransport(app=app)

    def factory(base_url: str, auth: httpx.Auth | None) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=base_url, auth=auth, transport=transport)

    woken: list[uuid.UUID] = []

    async def notify(client: Any, tenant_id: uuid.UUID) -> int:
        woken.append(tenant_id)
        return 1

    monkeypatch.setattr(connect, "notify_connection_fixed", notify)
    # An address nothing listens on: connecting to Temporal fails, so only the recorded call can show the wake-up
    # — and the connect must still succeed.
    gateway = TemporalGateway(TemporalSettings(address="127.0.0.1:1"))
    ctx = AppContext(settings=settings, engine=engine, sessions=sessions, temporal=gateway,
                     extras={"drivers": VaultDriverProvider(sessions, make_vault(settings, sessions),
                                                            client_factory=factory)})
    tenant = await make_tenant(sessions, "tekmetric", status="pending")
    body = {"client_id": state.tokens.client_id, "shop_id": state.shop_id, "environment": "sandbox",
            "client_secret": state.tokens.client_secret if good_secret else "not-the-secret"}
    token = mint_token(settings, subject="op-1", role="operator", tenant_id=tenant)
    monkeypatch.setattr(connect, "WAKE_AT", (0.0, 0.01))
    attempts: list[int] = []

    async def client() -> Any:  # unreachable on the first attempt (Temporal restarting), then back
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionRefusedError
        return object()  # the recorded notify stands in for the visibility query

    monkeypatch.setattr(gateway, "client", client)
    headers = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(context=ctx)),
                                 base_url="https://crm-sor.test") as api:
        answer = await api.post(f"/api/operator/tenants/{tenant}/connect/credentials", json=body, headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == ("active" if good_secret else "pending")
        await asyncio.gather(*ctx.extras.get("wake_tasks", set()))
        assert woken == ([tenant] if good_secret else [])  # the second round got through
        assert len(attempts) == (2 if good_secret else 0)

        # Temporal away for good: the connect still answers at once, and the wake-up gives up after its retries.
        monkeypatch.setattr(gateway, "client", _unreachable)
        again = await api.post(f"/api/operator/tenants/{tenant}/connect/test", headers=headers)
        assert again.status_code == 200 and again.json()["status"] == ("active" if good_secret else "pending")
        await asyncio.gather(*ctx.extras.get("wake_tasks", set()))
        assert woken == ([tenant] if good_secret else [])


async def _unreachable() -> Any:
    raise ConnectionRefusedError
