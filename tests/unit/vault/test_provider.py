"""VaultDriverProvider: a real driver, on a real httpx client, against the provider sandboxes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from drivers.base import CrmObject
from drivers.errors import AuthError, InvalidRequestError
from drivers.hubspot import HubSpotDriver
from drivers.provider import RateLimit
from sandboxes import hubspot as hubspot_sandbox
from settings import OutboundSettings, Settings
from store.models import AuditLog
from tests.unit.vault.support import ACTOR, SYSTEM, connect_to_sandbox, make_tenant, make_vault, sandbox
from vault.connections import DriverProvider
from vault.provider import TenantDisabledError, VaultDriverProvider, outbound_guard


def provider_for(settings: Settings, sessions: async_sessionmaker[AsyncSession],
                 transport: httpx.AsyncBaseTransport | None) -> VaultDriverProvider:
    return VaultDriverProvider(sessions, make_vault(settings, sessions), transport=transport)


async def test_open_yields_an_authenticated_hubspot_driver_and_audits_the_decrypt(
        settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    _, state, transport = sandbox("hubspot")
    provider: DriverProvider = provider_for(settings, sessions, transport)
    assert isinstance(provider, VaultDriverProvider)
    tenant = await connect_to_sandbox(provider.vault, sessions, state)
    async with provider.open(tenant, ACTOR) as driver:
        assert (await driver.test_connection()).ok
        created = await driver.create_record(CrmObject.CUSTOMER, {"email": "ann@example.com", "lastname": "Lee"},
                                             "idem-1")
        found = await driver.lookup_customer(email="ann@example.com")
    assert found is not None and found.external_id == created.external_id
    assert driver.client.is_closed
    async with sessions() as session:
        rows = (await session.execute(select(AuditLog).where(AuditLog.tenant_id == tenant,
                                                             AuditLog.action == "credential.decrypt"))).scalars()
        assert [(r.actor_type, r.purpose) for r in rows] == [("tool", "crm_lookup_customer")]


async def test_salesforce_uses_the_instance_url_from_its_token_response(
        settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    _, state, transport = sandbox("salesforce")
    provider = provider_for(settings, sessions, transport)
    tenant = await connect_to_sandbox(provider.vault, sessions, state, "salesforce", expires_in=None)
    blob = (await provider.vault.load(tenant, SYSTEM)).secret
    await provider.vault.store(tenant, "salesforce", {**blob, "instance_url": "https://sandbox-org.my.salesforce.com"},
                               actor=SYSTEM)
    async with provider.open(tenant, ACTOR) as driver:
        assert str(driver.client.base_url) == "https://sandbox-org.my.salesforce.com"
        assert (await driver.test_connection()).ok


async def test_a_private_app_token_is_a_static_bearer(settings: Settings,
                                                      sessions: async_sessionmaker[AsyncSession]) -> None:
    _, state, transport = sandbox("hubspot")
    provider = provider_for(settings, sessions, transport)
    tenant = await make_tenant(sessions)
    await provider.vault.store(tenant, "hubspot", {"auth": "bearer", "access_token": state.tokens.issue_access()},
                               actor=SYSTEM)
    async with provider.open(tenant, ACTOR) as driver:
        assert (await driver.test_connection()).ok


async def test_a_disabled_tenant_is_refused_as_auth_and_lookup_error(
        settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    _, state, transport = sandbox("hubspot")
    provider = provider_for(settings, sessions, transport)
    tenant = await connect_to_sandbox(provider.vault, sessions, state, status="disabled")
    with pytest.raises(TenantDisabledError) as info:
        async with provider.open(tenant, ACTOR):
            pass
    assert isinstance(info.value, AuthError) and isinstance(info.value, LookupError)
    assert state.calls.total() == 0


async def test_an_unknown_tenant_is_a_lookup_error(settings: Settings,
                                                   sessions: async_sessionmaker[AsyncSession]) -> None:
    import uuid

    with pytest.raises(LookupError):
        async with provider_for(settings, sessions, None).open(uuid.uuid4(), ACTOR):
            pass


async def test_a_connection_needing_reconnect_is_refused_with_auth_error(
        settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    _, state, transport = sandbox("hubspot")
    provider = provider_for(settings, sessions, transport)
    tenant = await connect_to_sandbox(provider.vault, sessions, state)
    await provider.vault.mark_needs_reconnect(await provider.vault.load(tenant, SYSTEM), SYSTEM)
    with pytest.raises(AuthError, match="reconnected"):
        async with provider.open(tenant, ACTOR):
            pass
    assert state.calls.total() == 0


@pytest.fixture
async def loopback_hubspot() -> AsyncIterator[tuple[str, hubspot_sandbox.HubSpotState]]:
    """The HubSpot sandbox served over real HTTP on 127.0.0.1, as the dev stack runs it."""
    app = hubspot_sandbox.create_app()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", app.state.sandbox
    server.should_exit = True
    await task


async def test_tenant_base_url_and_token_url_overrides_reach_a_loopback_sandbox(
        settings: Settings, sessions: async_sessionmaker[AsyncSession],
        loopback_hubspot: tuple[str, hubspot_sandbox.HubSpotState]) -> None:
    url, state = loopback_hubspot
    # No injected transport: real sockets through the SSRF guard, with the dev/test loopback allowance.
    allowance = settings.outbound.model_copy(update={"allow_loopback": True})
    provider = VaultDriverProvider(sessions, make_vault(settings, sessions), outbound=outbound_guard(allowance))
    tenant = await connect_to_sandbox(provider.vault, sessions, state,
                                      config={"base_url": url, "token_url": f"{url}/oauth/v3/token"})
    state.tokens.expire_all()
    async with provider.open(tenant, ACTOR) as driver:
        assert str(driver.client.base_url).rstrip("/") == url
        assert (await driver.test_connection()).ok
    assert state.calls["POST /oauth/v3/token"] == 1


async def test_from_settings_paces_lifecycles_under_the_limit_and_leaves_the_tools_their_reserve(
        settings: Settings, sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch) -> None:
    # HubSpot's 100 calls over a window longer than any slow run of this test (its real one is 10 s).
    monkeypatch.setattr(HubSpotDriver, "rate_limits", (RateLimit(100, 600.0),))
    _, state, transport = sandbox("hubspot")
    paced = settings.model_copy(update={"provider_budget": settings.provider_budget.model_copy(
        update={"enabled": True, "tool_reserve": 0.5})})
    built = VaultDriverProvider.from_settings(paced, sessions)
    provider = VaultDriverProvider(sessions, make_vault(settings, sessions), transport=transport, budget=built.budget)
    tenant = await connect_to_sandbox(provider.vault, sessions, state)
    try:
        async with provider.open(tenant, SYSTEM) as lifecycle:  # a system actor: the mirror's priority
            outcomes = [await lifecycle.test_connection() for _ in range(51)]
        async with provider.open(tenant, ACTOR) as tool:  # the agent's tool call still gets through
            assert (await tool.test_connection()).ok
    finally:
        await built.aclose()
    assert [o.ok for o in outcomes] == [True] * 50 + [False]  # half of the 100 is the mirror's
    assert outcomes[-1].reason is not None and "rate_limited" in outcomes[-1].reason
    assert state.calls["GET /crm/v3/objects/{object_type}"] == 51  # the refused call never reached HubSpot


async def test_without_the_loopback_allowance_the_same_tenant_is_refused_before_any_call(
        settings: Settings, sessions: async_sessionmaker[AsyncSession],
        loopback_hubspot: tuple[str, hubspot_sandbox.HubSpotState]) -> None:
    url, state = loopback_hubspot
    production = settings.model_copy(update={"outbound": OutboundSettings()})  # the allowance is off by default
    provider = VaultDriverProvider.from_settings(production, sessions)
    tenant = await connect_to_sandbox(provider.vault, sessions, state,
                                      config={"base_url": url, "token_url": f"{url}/oauth/v3/token"})
    with pytest.raises(InvalidRequestError, match="127.0.0.1 is a loopback address") as refused:
        async with provider.open(tenant, ACTOR):
            pass
    assert refused.value.provider_code == "outbound_refused" and not refused.value.retryable
    assert state.calls.total() == 0
