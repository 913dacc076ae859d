"""Connecting Odoo, generic REST and custom webhook tenants through the operator route: forms validated (422
listing every problem), secrets stored encrypted, settings kept on the tenant, test_connection before `active`."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
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
from sandboxes import generic_rest, webhook_receiver
from sandboxes.odoo import app as odoo_app
from settings import Settings, TemporalSettings
from store.models import Tenant
from tests.unit.drivers.generic_rest_configs import jsonapi_config
from tests.unit.vault.support import ACTOR, SYSTEM, make_tenant, make_vault
from vault.provider import VaultDriverProvider

HOSTS = {"odoo": "acme.odoo.example", "generic_rest": "api.jsonapi.example", "custom_webhook": "hooks.partner.example"}


class ByHost(httpx.AsyncBaseTransport):
    def __init__(self, apps: dict[str, Starlette]) -> None:
        self.transports = {host: httpx.ASGITransport(app=app) for host, app in apps.items()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.transports[request.url.host].handle_async_request(request)


@pytest.fixture
async def stack(settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
                ) -> AsyncIterator[tuple[httpx.AsyncClient, VaultDriverProvider, dict[str, Any]]]:
    apps = {"odoo": odoo_app.create_app(), "generic_rest": generic_rest.create_app(),
            "custom_webhook": webhook_receiver.create_app()}
    drivers = VaultDriverProvider(sessions, make_vault(settings, sessions),
                                  transport=ByHost({HOSTS[slug]: app for slug, app in apps.items()}))
    ctx = AppContext(settings=settings, engine=engine, sessions=sessions,
                     temporal=TemporalGateway(TemporalSettings(address="127.0.0.1:1")), extras={"drivers": drivers})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(context=ctx)),
                                 base_url="https://crm-sor.test") as api:
        yield api, drivers, {slug: app.state.sandbox for slug, app in apps.items()}


def operator(settings: Settings) -> dict[str, str]:
    return {"authorization": f"Bearer {mint_token(settings, subject='op-1', role='operator', tenant_id=None)}"}


async def post_form(api: httpx.AsyncClient, settings: Settings, tenant: uuid.UUID, body: Any) -> httpx.Response:
    return await api.post(f"/api/operator/tenants/{tenant}/connect/credentials", json=body,
                          headers=operator(settings))


async def test_odoo_connects_with_an_api_key_and_a_wrong_key_stays_pending(
        settings: Settings, sessions: async_sessionmaker[AsyncSession], stack: Any) -> None:
    api, drivers, states = stack
    state = states["odoo"]
    key = state.tokens.credentials().access_token
    body = {"instance_url": f"https://{HOSTS['odoo']}", "database": state.database, "username": state.login,
            "api_key": key}
    tenant = await make_tenant(sessions, "odoo", status="pending")
    good = await post_form(api, settings, tenant, body)
    assert good.status_code == 200 and good.json()["status"] == "active", good.text
    async with sessions() as session:
        row = await session.get(Tenant, tenant)
    assert row is not None and row.settings["database"] == state.database and key not in str(row.settings)
    async with drivers.open(tenant, ACTOR) as driver:
        created = await driver.create_record(CrmObject.CUSTOMER, {"name": "Ada"}, "k1")
        assert (await driver.get_record(CrmObject.CUSTOMER, created.external_id)).fields["name"] == "Ada"
    other = await make_tenant(sessions, "odoo", status="pending")
    wrong = await post_form(api, settings, other, body | {"api_key": "f" * 40})
    assert wrong.json()["status"] == "pending" and "auth_error" in wrong.json()["reason"]
    assert "f" * 40 not in wrong.text
    both = await post_form(api, settings, other, body | {"password": "pw"})
    assert both.status_code == 422 and key not in both.text


async def test_a_generic_rest_config_is_validated_whole_then_tested(
        settings: Settings, sessions: async_sessionmaker[AsyncSession], stack: Any) -> None:
    api, drivers, states = stack
    body = jsonapi_config(states["generic_rest"])
    tenant = await make_tenant(sessions, "generic_rest", status="pending")
    broken = {**body, "base_url": "nope", "objects": {"deal": {"verbs": {"get": {"path": "/d/{{ id "}}}}}
    invalid = await post_form(api, settings, tenant, broken)
    assert invalid.status_code == 422
    where = [".".join(map(str, e["loc"])) for e in invalid.json()["errors"]]
    assert any("base_url" in w for w in where)
    assert body["auth"]["client_secret"] not in invalid.text
    good = await post_form(api, settings, tenant, body)
    assert good.json()["status"] == "active", good.text
    credential = await drivers.vault.load(tenant, SYSTEM)
    assert credential.secret["auth_config"]["client_secret"] == body["auth"]["client_secret"]
    async with drivers.open(tenant, ACTOR) as driver:
        assert (await driver.create_record(CrmObject.DEAL, {"name": "Loft"}, "d1")).created


async def test_a_custom_webhook_endpoint_connects_with_the_secret_it_holds(
        settings: Settings, sessions: async_sessionmaker[AsyncSession], stack: Any) -> None:
    api, drivers, states = stack
    receiver = states["custom_webhook"]
    endpoint = f"https://{HOSTS['custom_webhook']}{webhook_receiver.PATH}"
    tenant = await make_tenant(sessions, "custom_webhook", status="pending")
    unknown = await post_form(api, settings, tenant, {"endpoint_url": endpoint})  # a fresh secret: not held yet
    assert unknown.json()["status"] == "pending" and "invalid_signature" in unknown.json()["reason"]
    generated = unknown.json()["generated_secret"]  # shown this once, for the partner to install
    assert generated.startswith("whsec_")
    stored = await drivers.vault.load(tenant, ACTOR, provider="custom_webhook")
    assert stored.secret["signing_secrets"] == [generated]
    held = receiver.secrets.held[0]
    good = await post_form(api, settings, tenant, {"endpoint_url": endpoint, "signing_secret": held})
    assert good.json()["status"] == "active" and held not in good.text
    assert receiver.calls[f"POST {webhook_receiver.PATH} connection.test"] == 1
