"""Tokens of the OAuth family through the vault: Zoho's throttled accounts server and athenahealth's
client-credentials grant, across several processes (one VaultDriverProvider each) sharing one database."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from drivers.base import CrmObject
from drivers.errors import RateLimitedError
from settings import Settings
from tests.unit.vault.support import ACTOR, SYSTEM, connect_to_sandbox, make_tenant, make_vault, sandbox
from vault.provider import VaultDriverProvider


def processes(n: int, settings: Settings, sessions: async_sessionmaker[AsyncSession], transport: Any
              ) -> list[VaultDriverProvider]:
    return [VaultDriverProvider(sessions, make_vault(settings, sessions), transport=transport) for _ in range(n)]


async def read_all(providers: list[VaultDriverProvider], tenant: uuid.UUID, obj: CrmObject, record_id: str,
                   per_process: int) -> set[str]:
    async def one(provider: VaultDriverProvider) -> str:
        async with provider.open(tenant, ACTOR) as driver:
            return (await driver.get_record(obj, record_id)).external_id

    found = await asyncio.gather(*(one(p) for p in providers for _ in range(per_process)))
    return set(found)


async def test_a_zoho_refresh_storm_is_one_token_call_and_never_locks_the_tenant_out(
        settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    _, state, transport = sandbox("zoho")
    tenant = await connect_to_sandbox(make_vault(settings, sessions), sessions, state, "zoho", expires_in=3600)
    deal = state.add("Deals", {"Deal_Name": "Storm", "Stage": "Qualification"})["id"]
    state.tokens.expire_all()

    fleet = processes(5, settings, sessions, transport)
    assert await read_all(fleet, tenant, CrmObject.DEAL, deal, 10) == {deal}  # 50 callers
    assert state.calls["POST /oauth/v2/token"] == 1

    state.tokens_per_window = 1  # the accounts server's budget for this refresh token is spent
    state.tokens.expire_all()
    with pytest.raises(RateLimitedError) as throttled:
        await read_all(fleet[:1], tenant, CrmObject.DEAL, deal, 1)
    assert throttled.value.retryable and throttled.value.retry_after is not None
    credential = await fleet[0].vault.load(tenant, SYSTEM)
    assert not credential.needs_reconnect  # a throttle is not a revoked grant

    state.tokens_per_window = 10  # the window moved on: the same refresh token works again
    assert await read_all(fleet[1:2], tenant, CrmObject.DEAL, deal, 1) == {deal}


async def test_athenahealth_client_credentials_are_granted_once_and_survive_a_restart(
        settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    _, state, transport = sandbox("athenahealth")
    tenant = await make_tenant(sessions, "athenahealth",
                               config={"practice_id": state.practice_id, "environment": "preview"})
    secret = {"auth": "token", "client_id": state.tokens.client_id, "client_secret": state.tokens.client_secret}
    await make_vault(settings, sessions).store(tenant, "athenahealth", secret, actor=SYSTEM)
    patient = state.add_patient({"firstname": "Ann", "lastname": "Lee", "dob": "01/15/1985"})["patientid"]

    fleet = processes(5, settings, sessions, transport)
    assert await read_all(fleet, tenant, CrmObject.CUSTOMER, patient, 10) == {patient}  # 50 callers, no token yet
    assert state.calls["POST /oauth2/v1/token"] == 1
    stored = await fleet[0].vault.load(tenant, SYSTEM)
    assert stored.secret["access_token"] and stored.expires_at is not None  # "3600" (a string) became an expiry

    restarted = processes(1, settings, sessions, transport)
    assert await read_all(restarted, tenant, CrmObject.CUSTOMER, patient, 3) == {patient}
    assert state.calls["POST /oauth2/v1/token"] == 1  # the persisted token, not a new grant

    state.tokens.expire_all()  # one 401 → one new token → one resend, for every caller together
    assert await read_all(fleet, tenant, CrmObject.CUSTOMER, patient, 4) == {patient}
    assert state.calls["POST /oauth2/v1/token"] == 2
