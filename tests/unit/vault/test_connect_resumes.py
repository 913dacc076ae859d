"""A connect that makes the tenant active again wakes its mirror parked on auth_error (through the connect
routes): the operator's reconnect is what "the connection is fixed" means. The wake-up is an outbox intent, so a
Temporal unreachable at that moment (a restart) or an API process killed right after delays it, never loses it;
a connect whose test fails wakes nothing."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.app import create_app
from api.auth import mint_token
from api.context import AppContext
from api.temporal import TemporalGateway
from sandboxes import tekmetric
from settings import Settings, TemporalSettings
from store.models import MirrorOutbox
from tests.unit.vault.support import make_tenant, make_vault
from vault.provider import VaultDriverProvider


@pytest.mark.parametrize("good_secret", [True, False])
async def test_a_form_connect_that_activates_queues_a_durable_wake_up(
        good_secret: bool, settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
        ) -> None:
    app = tekmetric.create_app()
    state = app.state.sandbox
    transport = httpx.ASGITransport(app=app)

    def factory(base_url: str, auth: httpx.Auth | None) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=base_url, auth=auth, transport=transport)

    # An address nothing listens on: Temporal is away (a restart), and the connect must still succeed.
    gateway = TemporalGateway(TemporalSettings(address="127.0.0.1:1"))
    ctx = AppContext(settings=settings, engine=engine, sessions=sessions, temporal=gateway,
                     extras={"drivers": VaultDriverProvider(sessions, make_vault(settings, sessions),
                                                            client_factory=factory)})
    tenant = await make_tenant(sessions, "tekmetric", status="pending")
    body = {"client_id": state.tokens.client_id, "shop_id": state.shop_id, "environment": "sandbox",
            "client_secret": state.tokens.client_secret if good_secret else "not-the-secret"}
    token = mint_token(settings, subject="op-1", role="operator", tenant_id=tenant)
    headers = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(context=ctx)),
                                 base_url="https://crm-sor.test") as api:
        answer = await api.post(f"/api/operator/tenants/{tenant}/connect/credentials", json=body, headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == ("active" if good_secret else "pending")
        again = await api.post(f"/api/operator/tenants/{tenant}/connect/test", headers=headers)
        assert again.status_code == 200 and again.json()["status"] == ("active" if good_secret else "pending")
    async with sessions() as session:
        intents = (await session.execute(select(MirrorOutbox.op, MirrorOutbox.table_name, MirrorOutbox.row_id)
                                         .where(MirrorOutbox.tenant_id == tenant))).all()
    # one wake-up per connect that left the tenant active (the relay delivers it when Temporal is back)
    assert intents == ([("reconnected", "tenants", tenant)] * 2 if good_secret else [])
