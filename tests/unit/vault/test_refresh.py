"""Token refresh through VaultDriverProvider against the HubSpot sandbox's real token endpoint."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from drivers.base import CrmObject
from drivers.errors import AuthError, UnavailableError
from settings import Settings
from store.models import AuditLog
from store.session import create_engine, session_factory
from tests.unit.vault.support import ACTOR, SYSTEM, closed_port_url, connect_to_sandbox, make_vault, sandbox
from vault.provider import VaultDriverProvider

TOKEN_CALLS = "POST /oauth/v3/token"


class Recorder:
    """Counts the statuses of every response a provider's clients receive (httpx event hook)."""

    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()

    async def __call__(self, response: httpx.Response) -> None:
        if "/oauth/" not in response.request.url.path:
            self.statuses[response.status_code] += 1


def recording_provider(settings: Settings, sessions: async_sessionmaker[AsyncSession],
                       transport: httpx.AsyncBaseTransport, recorder: Recorder) -> VaultDriverProvider:
    def factory(base_url: str, auth: httpx.Auth | None) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=base_url, auth=auth, transport=transport,
                                 event_hooks={"response": [recorder]})

    return VaultDriverProvider(sessions, make_vault(settings, sessions), client_factory=factory)


async def lookup(provider: VaultDriverProvider, tenant: uuid.UUID, email: str) -> str | None:
    async with provider.open(tenant, ACTOR) as driver:
        found = await driver.lookup_customer(email=email)
    return None if found is None else found.external_id


async def lookup_all(providers: list[VaultDriverProvider], tenant: uuid.UUID, email: str) -> list[str | None]:
    """One request per provider entry, all in flight together with the token their driver opened with."""
    async with AsyncExitStack() as stack:
        drivers = [await stack.enter_async_context(p.open(tenant, ACTOR)) for p in providers]
        found = await asyncio.gather(*(driver.lookup_customer(email=email) for driver in drivers))
    return [None if record is None else record.external_id for record in found]


async def seed_contact(provider: VaultDriverProvider, tenant: uuid.UUID) -> str:
    async with provider.open(tenant, SYSTEM) as driver:
        return (await driver.create_record(CrmObject.CUSTOMER, {"email": "kim@example.com"}, "seed")).external_id


async def test_fifty_concurrent_401s_cause_exactly_one_token_call_and_all_succeed(
        settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    _, state, transport = sandbox("hubspot")
    recorder = Recorder()
    provider = recording_provider(settings, sessions, transport, recorder)
    tenant = await connect_to_sandbox(provider.vault, sessions, state)
    contact = await seed_contact(provider, tenant)
    recorder.statuses.clear()
    state.tokens.expire_all()  # the provider says expired; our clock still thinks the token is good

    results = await lookup_all([provider] * 50, tenant, "kim@example.com")

    assert results == [contact] * 50
    assert state.calls[TOKEN_CALLS] == 1
    assert recorder.statuses[401] == 50 and recorder.statuses[200] == 50
    credential = await provider.vault.load(tenant, SYSTEM)
    assert credential.rotated_at is not None and credential.version == 2
    async with sessions() as session:
        rotations = (await session.execute(select(AuditLog).where(
            AuditLog.tenant_id == tenant, AuditLog.action == "credential.rotate"))).scalars().all()
    assert len(rotations) == 1 and "access_token" not in str(rotations[0].details)


@pytest.fixture
async def second_process(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Another engine on the same database: what a second API or worker process would have."""
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


async def test_two_processes_sharing_the_database_refresh_once(
        settings: Settings, sessions: async_sessionmaker[AsyncSession],
        second_process: async_sessionmaker[AsyncSession]) -> None:
    _, state, transport = sandbox("hubspot")
    recorder = Recorder()
    first = recording_provider(settings, sessions, transport, recorder)
    second = recording_provider(settings, second_process, transport, recorder)
    tenant = await connect_to_sandbox(first.vault, sessions, state)
    contact = await seed_contact(first, tenant)
    recorder.statuses.clear()
    state.tokens.expire_all()

    results = await lookup_all([first, second] * 25, tenant, "kim@example.com")

    assert results == [contact] * 50
    assert state.calls[TOKEN_CALLS] == 1
    assert recorder.statuses[401] == 50 and recorder.statuses[200] == 50
    assert sum(first.tokens.refreshes.values()) + sum(second.tokens.refreshes.values()) == 1


async def test_refreshes_ahead_of_a_stated_expiry_without_a_401(
        settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    _, state, transport = sandbox("hubspot")
    recorder = Recorder()
    provider = recording_provider(settings, sessions, transport, recorder)
    tenant = await connect_to_sandbox(provider.vault, sessions, state, expires_in=30)  # inside the margin
    before = await provider.vault.load(tenant, SYSTEM)

    assert await lookup(provider, tenant, "nobody@example.com") is None

    assert state.calls[TOKEN_CALLS] == 1 and recorder.statuses[401] == 0
    after = await provider.vault.load(tenant, SYSTEM)
    assert after.secret["access_token"] != before.secret["access_token"]
    assert after.expires_at is not None and before.expires_at is not None and after.expires_at > before.expires_at


async def test_rotated_refresh_tokens_are_persisted_and_used_by_the_next_process(
        settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    _, state, transport = sandbox("hubspot")
    state.tokens.rotate_refresh_tokens = True  # each refresh invalidates the refresh token it used
    provider = recording_provider(settings, sessions, transport, Recorder())
    tenant = await connect_to_sandbox(provider.vault, sessions, state)
    original = (await provider.vault.load(tenant, SYSTEM)).secret["refresh_token"]

    state.tokens.expire_all()
    assert await lookup(provider, tenant, "nobody@example.com") is None
    rotated = (await provider.vault.load(tenant, SYSTEM)).secret["refresh_token"]
    assert rotated != original

    state.tokens.expire_all()
    later = recording_provider(settings, sessions, transport, Recorder())  # a fresh process: only the DB
    assert await lookup(later, tenant, "nobody@example.com") is None
    assert state.calls[TOKEN_CALLS] == 2


async def test_repeated_refreshes_without_rotation_keep_the_refresh_token(
        settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    _, state, transport = sandbox("hubspot")
    provider = recording_provider(settings, sessions, transport, Recorder())
    tenant = await connect_to_sandbox(provider.vault, sessions, state)
    for _ in range(3):
        state.tokens.expire_all()
        assert await lookup(provider, tenant, "nobody@example.com") is None
    assert state.calls[TOKEN_CALLS] == 3


async def test_a_revoked_refresh_token_gives_auth_error_and_needs_reconnect(
        settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    _, state, transport = sandbox("hubspot")
    provider = recording_provider(settings, sessions, transport, Recorder())
    tenant = await connect_to_sandbox(provider.vault, sessions, state)
    state.tokens.revoke_refresh()
    state.tokens.expire_all()

    with pytest.raises(AuthError) as info:
        await lookup(provider, tenant, "nobody@example.com")

    assert info.value.code == "auth_error" and info.value.provider_code == "invalid_grant"
    assert "rt-" not in str(info.value)
    assert (await provider.vault.load(tenant, SYSTEM)).needs_reconnect
    api_calls = state.calls.total()
    with pytest.raises(AuthError, match="reconnected"):
        await lookup(provider, tenant, "nobody@example.com")
    assert state.calls.total() == api_calls  # refused before any network call


async def test_an_unreachable_token_endpoint_is_retryable_and_keeps_the_connection(
        settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    _, state, transport = sandbox("hubspot")

    def factory(base_url: str, auth: httpx.Auth | None) -> httpx.AsyncClient:
        # API calls reach the sandbox; the token endpoint (a full URL on a closed port) is really refused.
        return httpx.AsyncClient(base_url=base_url, auth=auth, transport=transport if base_url else None)

    provider = VaultDriverProvider(sessions, make_vault(settings, sessions), client_factory=factory)
    tenant = await connect_to_sandbox(provider.vault, sessions, state,
                                      config={"token_url": f"{closed_port_url()}/oauth/v3/token"})
    state.tokens.expire_all()
    with pytest.raises(UnavailableError):
        await lookup(provider, tenant, "nobody@example.com")
    assert not (await provider.vault.load(tenant, SYSTEM)).needs_reconnect


async def test_salesforce_refreshes_on_invalid_session_and_keeps_its_refresh_token(
        settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    _, state, transport = sandbox("salesforce")
    recorder = Recorder()
    provider = recording_provider(settings, sessions, transport, recorder)
    tenant = await connect_to_sandbox(provider.vault, sessions, state, "salesforce", expires_in=None,
                                      config={"instance_url": "https://sandbox-org.my.salesforce.com"})
    before = (await provider.vault.load(tenant, SYSTEM)).secret
    state.tokens.expire_all()  # Salesforce states no expiry: only the 401 INVALID_SESSION_ID tells

    assert await lookup_all([provider] * 10, tenant, "nobody@example.com") == [None] * 10

    assert state.calls["POST /services/oauth2/token"] == 1 and recorder.statuses[401] == 10
    after = await provider.vault.load(tenant, SYSTEM)
    # The refresh response omits refresh_token (no rotation): the stored one is kept, not lost.
    assert after.secret["refresh_token"] == before["refresh_token"] and after.expires_at is None
    assert after.secret["access_token"] != before["access_token"]
