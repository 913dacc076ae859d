"""Form connect for Mindbody, Tekmetric and Toast through the app and the vault, against their sandboxes: the form
is validated, its secret stored encrypted, its settings kept on the tenant, and `test_connection` decides
`active`; afterwards the vault's persisted token serves every call, and an expiry costs one grant however many
callers hit the 401 at once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette

from api.app import create_app
from api.auth import mint_token
from api.context import AppContext
from api.temporal import TemporalGateway
from drivers.base import CrmObject
from sandboxes import mindbody, tekmetric, toast
from settings import Settings, TemporalSettings
from store.models import Tenant
from tests.unit.vault.support import SYSTEM, make_tenant, make_vault
from vault.provider import VaultDriverProvider

FORMS: dict[str, tuple[Callable[[], Starlette], Callable[[Any], dict[str, Any]], str]] = {
    "mindbody": (mindbody.create_app, lambda st: {"site_id": st.site_id, "api_key": st.api_key,
                                                  "username": st.username, "password": st.password},
                 mindbody.TOKEN_PATH),
    "tekmetric": (tekmetric.create_app, lambda st: {"client_id": st.tokens.client_id, "shop_id": st.shop_id,
                                                    "client_secret": st.tokens.client_secret,
                                                    "environment": "sandbox"}, tekmetric.TOKEN_PATH),
    "toast": (toast.create_app, lambda st: {"client_id": st.tokens.client_id, "client_secret": st.tokens.client_secret,
                                            "restaurant_guid": st.restaurant_guid, "environment": "sandbox"},
              toast.LOGIN_PATH),
}
SECRET_OF_FORM = {"mindbody": "password", "tekmetric": "client_secret", "toast": "client_secret"}


@pytest.fixture(params=sorted(FORMS))
async def rig(request: pytest.FixtureRequest, settings: Settings, engine: AsyncEngine,
              sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[tuple[str, Any, VaultDriverProvider,
                                                                                httpx.AsyncClient]]:
    slug = request.param
    app = FORMS[slug][0]()
    transport = httpx.ASGITransport(app=app)

    def factory(base_url: str, auth: httpx.Auth | None) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=base_url, auth=auth, transport=transport)

    drivers = VaultDriverProvider(sessions, make_vault(settings, sessions), client_factory=factory)
    ctx = AppContext(settings=settings, engine=engine, sessions=sessions,
                     temporal=TemporalGateway(TemporalSettings(address="127.0.0.1:1")), extras={"drivers": drivers})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(context=ctx)),
                                 base_url="https://crm-sor.test") as api:
        yield slug, app.state.sandbox, drivers, api


def _operator(settings: Settings, tenant: uuid.UUID) -> dict[str, str]:
    return {"authorization": f"Bearer {mint_token(settings, subject='op-1', role='operator', tenant_id=tenant)}"}


async def test_form_connect_tests_before_active_and_the_stored_token_is_reused(
        rig: tuple[str, Any, VaultDriverProvider, httpx.AsyncClient], settings: Settings,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    slug, state, drivers, api = rig
    _, form, token_path = FORMS[slug]
    tenant = await make_tenant(sessions, slug, status="pending")
    url, headers = f"/api/operator/tenants/{tenant}/connect/credentials", _operator(settings, tenant)
    body = form(state)
    if slug == "toast":  # Toast counts every login, a refused one too: this test makes three within the hour
        state.logins_per_hour = 3
    typo = await api.post(url, json=body | {"typo": 1}, headers=headers)
    assert typo.status_code == 422 and body[SECRET_OF_FORM[slug]] not in typo.text

    wrong = await api.post(url, json=body | {SECRET_OF_FORM[slug]: "not-the-secret"}, headers=headers)
    assert wrong.status_code == 200 and wrong.json()["status"] == "pending" and "auth_error" in wrong.json()["reason"]
    assert "not-the-secret" not in wrong.text

    good = await api.post(url, json=body, headers=headers)
    assert good.status_code == 200 and good.json()["status"] == "active", good.text
    async with sessions() as session:
        row = await session.get(Tenant, tenant)
        assert row is not None and row.status == "active"
        kept = {k: v for k, v in body.items() if k in row.settings}
    assert kept and all(str(row.settings[k]).lower() == str(v).lower() for k, v in kept.items())
    stored = await drivers.vault.load(tenant, SYSTEM)
    assert stored.secret["auth"] == "token" and stored.secret.get("access_token")
    grants = state.calls[f"POST {token_path}"]

    # Later calls in another driver use the persisted token; an expiry hit by 50 callers costs one grant.
    async with drivers.open(tenant, SYSTEM) as driver:
        assert await driver.lookup_customer(email="nobody@example.com") is None
        assert state.calls[f"POST {token_path}"] == grants
        state.tokens.expire_all()
        if slug == "toast":
            state.knobs.interval_limit = None  # 50 calls at once exceed Toast's 20/s; the budget paces them
        found = await asyncio.gather(*(driver.search_records(CrmObject.CUSTOMER, "nobody@example.com")
                                       for _ in range(50)))
    assert found == [[]] * 50
    assert state.calls[f"POST {token_path}"] == grants + 1
