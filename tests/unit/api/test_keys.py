"""API keys: shown once, stored as a hash, verified in constant time, scoped, revocable, tenant-bound."""

from __future__ import annotations

import hashlib
import uuid

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.keys import SCOPES, create_api_key, generate_key, list_api_keys, parse_prefix, revoke_api_key
from store.models import ApiKey
from tests.unit.api.support import key_headers, make_key, make_tenant

CREATE = "/v1/crm/create-record"
BODY = {"object": "customer", "fields": {"last_name": "Keyed"}, "idempotency_key": "k-1"}


def test_keys_are_high_entropy_and_carry_a_lookup_prefix() -> None:
    keys = [generate_key() for _ in range(50)]
    assert len({key for key, _ in keys}) == len({prefix for _, prefix in keys}) == 50
    for key, prefix in keys:
        assert parse_prefix(key) == prefix
        secret = key.removeprefix(f"crm_sk_{prefix}_")
        assert len(secret) >= 43  # 32 random bytes, base64url
    assert parse_prefix("crm_sk_nothex!!!!!!_abc") is None and parse_prefix("sk_live_123") is None


async def test_only_the_hash_is_stored(sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = await make_tenant(sessions)
    issued = await create_api_key(sessions, tenant, "website", ["crm:write", "leads:write"])
    async with sessions() as session:
        row = await session.scalar(select(ApiKey).where(ApiKey.id == issued.id))
    assert row is not None
    assert row.key_hash == hashlib.sha256(issued.key.encode()).digest()
    assert issued.key.encode() not in row.key_hash and issued.key not in (row.name, row.prefix)
    assert row.prefix == issued.prefix and sorted(row.scopes) == ["crm:write", "leads:write"]
    listed = await list_api_keys(sessions, tenant)
    assert [k.id for k in listed] == [issued.id]


async def test_bad_scopes_and_unknown_tenants_are_refused(sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = await make_tenant(sessions)
    with pytest.raises(ValueError, match="unknown scope"):
        await create_api_key(sessions, tenant, "x", ["crm:everything"])
    with pytest.raises(ValueError, match="at least one scope"):
        await create_api_key(sessions, tenant, "x", [])
    with pytest.raises(LookupError):
        await create_api_key(sessions, uuid.uuid4(), "x", ["crm:write"])
    assert set(SCOPES) >= {"crm:read", "crm:write", "leads:write"}


async def test_unknown_forged_revoked_and_unscoped_keys(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], tenant: uuid.UUID) -> None:
    good = await make_key(sessions, tenant)
    assert (await api.post(CREATE, json=BODY)).status_code == 401
    unknown = await api.post(CREATE, json=BODY, headers=key_headers(generate_key()[0]))
    assert unknown.status_code == 401 and unknown.json()["type"].endswith("/invalid-api-key")
    forged = good.key[:-4] + ("AAAA" if not good.key.endswith("AAAA") else "BBBB")  # right prefix, wrong secret
    response = await api.post(CREATE, json=BODY, headers=key_headers(forged))
    assert response.status_code == 401 and response.json()["type"].endswith("/invalid-api-key")
    assert "WWW-Authenticate" in response.headers

    leads_only = await make_key(sessions, tenant, scopes=("leads:write",))
    response = await api.post(CREATE, json=BODY, headers=key_headers(leads_only))
    assert response.status_code == 403 and response.json()["required_scope"] == "crm:write"

    assert (await api.post(CREATE, json=BODY, headers={"x-api-key": good.key})).status_code == 201
    await revoke_api_key(sessions, tenant, good.prefix)
    response = await api.post(CREATE, json=BODY, headers=key_headers(good))
    assert response.status_code == 401 and response.json()["type"].endswith("/api-key-revoked")


async def test_a_tenant_can_never_revoke_or_list_another_tenants_key(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    mine, theirs = await make_tenant(sessions), await make_tenant(sessions)
    their_key = await make_key(sessions, theirs)
    for ident in (str(their_key.id), their_key.prefix, their_key.key):
        with pytest.raises(LookupError):
            await revoke_api_key(sessions, mine, ident)
    assert await list_api_keys(sessions, mine) == []
    (row,) = await list_api_keys(sessions, theirs)
    assert row.revoked_at is None


async def test_disabled_tenant_keys_stop_working(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = await make_tenant(sessions, status="disabled")
    key = await make_key(sessions, tenant)
    response = await api.post(CREATE, json=BODY, headers=key_headers(key))
    assert response.status_code == 403 and response.json()["type"].endswith("/tenant-disabled")


async def test_use_is_recorded(api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession],
                               tenant: uuid.UUID) -> None:
    key = await make_key(sessions, tenant)
    await api.post(CREATE, json=BODY, headers=key_headers(key))
    (row,) = await list_api_keys(sessions, tenant)
    assert row.last_used_at is not None
