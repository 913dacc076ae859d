"""The credential vault against a real database and moto's KMS server on loopback."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from settings import Settings
from store.models import AuditLog, TenantCredential
from store.session import create_engine, session_factory
from tests.unit.vault.support import ACTOR, SYSTEM, KmsServer, closed_port_url, make_tenant, make_vault
from vault.audit import AuditTrail
from vault.credentials import CredentialNotFoundError
from vault.crypto import DecryptError
from vault.kms import DataKeyCache, KmsEnvelope, KmsUnavailableError

SECRET = {"access_token": "at-123", "refresh_token": "rt-456", "client_id": "cid", "client_secret": "cs"}


async def audit_rows(sessions: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID) -> list[AuditLog]:
    async with sessions() as session:
        query = select(AuditLog).where(AuditLog.tenant_id == tenant_id).order_by(AuditLog.id)
        return list((await session.execute(query)).scalars())


async def raw_row(sessions: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID) -> TenantCredential:
    async with sessions() as session:
        query = select(TenantCredential).where(TenantCredential.tenant_id == tenant_id)
        return (await session.execute(query)).scalars().one()


async def test_env_round_trip_is_audited_with_the_actor(settings: Settings,
                                                        sessions: async_sessionmaker[AsyncSession]) -> None:
    vault = make_vault(settings, sessions)
    tenant = await make_tenant(sessions)
    stored = await vault.store(tenant, "hubspot", SECRET, actor=SYSTEM)
    loaded = await vault.load(tenant, ACTOR)
    assert loaded.secret == SECRET and loaded.scheme == "env" and loaded.version == stored.version == 1
    assert "at-123" not in repr(loaded)
    row = await raw_row(sessions, tenant)
    assert b"at-123" not in row.ciphertext and len(row.nonce) == 12
    decrypts = [r for r in await audit_rows(sessions, tenant) if r.action == "credential.decrypt"]
    assert len(decrypts) == 1
    audit = decrypts[0]
    assert (audit.actor_type, audit.actor_id, audit.purpose, audit.request_id, audit.conversation_id) == (
        "tool", "agent-7", "crm_lookup_customer", "req-1", "conv-9")
    assert "at-123" not in str(audit.details) and audit.details["credential_id"] == str(stored.id)


@pytest.mark.parametrize("scheme", ["env", "kms"])
async def test_a_ciphertext_swapped_into_another_row_fails_to_decrypt(
        scheme: str, settings: Settings, sessions: async_sessionmaker[AsyncSession], kms_server: KmsServer) -> None:
    vault = make_vault(settings, sessions, kms_server.envelope() if scheme == "kms" else None)
    victim, attacker = await make_tenant(sessions), await make_tenant(sessions)
    await vault.store(victim, "hubspot", SECRET, actor=SYSTEM)
    await vault.store(attacker, "hubspot", {"access_token": "mine"}, actor=SYSTEM)
    source = await raw_row(sessions, victim)
    assert source.scheme == scheme
    async with sessions() as session, session.begin():
        await session.execute(update(TenantCredential).where(TenantCredential.tenant_id == attacker).values(
            nonce=source.nonce, ciphertext=source.ciphertext, wrapped_key=source.wrapped_key))
    with pytest.raises(DecryptError) as info:
        await make_vault(settings, sessions, kms_server.envelope() if scheme == "kms" else None).load(attacker, ACTOR)
    assert "at-123" not in str(info.value)
    assert not [r for r in await audit_rows(sessions, attacker) if r.action == "credential.decrypt"]


async def test_env_and_kms_rows_are_readable_side_by_side(settings: Settings,
                                                          sessions: async_sessionmaker[AsyncSession],
                                                          kms_server: KmsServer) -> None:
    env_tenant, kms_tenant = await make_tenant(sessions), await make_tenant(sessions)
    await make_vault(settings, sessions).store(env_tenant, "hubspot", {"k": "env"}, actor=SYSTEM)
    kms_vault = make_vault(settings, sessions, kms_server.envelope())
    await kms_vault.store(kms_tenant, "hubspot", {"k": "kms"}, actor=SYSTEM)
    kms_row = await raw_row(sessions, kms_tenant)
    assert kms_row.scheme == "kms" and kms_row.wrapped_key and kms_row.key_version.startswith("kms:")
    reader = make_vault(settings, sessions, kms_server.envelope())  # a fresh process: cold data-key cache
    assert (await reader.load(env_tenant, ACTOR)).secret == {"k": "env"}
    assert (await reader.load(kms_tenant, ACTOR)).secret == {"k": "kms"}
    assert reader.sealer.kms is not None and reader.sealer.kms.calls["Decrypt"] == 1


async def test_kms_unreachable_fails_kms_rows_clearly_while_env_rows_work(
        settings: Settings, sessions: async_sessionmaker[AsyncSession], kms_server: KmsServer) -> None:
    env_tenant, kms_tenant = await make_tenant(sessions), await make_tenant(sessions)
    await make_vault(settings, sessions).store(env_tenant, "hubspot", {"k": "env"}, actor=SYSTEM)
    await make_vault(settings, sessions, kms_server.envelope()).store(kms_tenant, "hubspot", {"k": "kms"},
                                                                      actor=SYSTEM)
    away = KmsServer(endpoint_url=closed_port_url(), key_id=kms_server.key_id).envelope()
    reader = make_vault(settings, sessions, away)
    with pytest.raises(KmsUnavailableError, match="KMS Decrypt failed: EndpointConnectionError"):
        await reader.load(kms_tenant, ACTOR)
    assert (await reader.load(env_tenant, ACTOR)).secret == {"k": "env"}


async def test_an_audit_failure_never_blocks_the_decrypt(settings: Settings,
                                                         sessions: async_sessionmaker[AsyncSession],
                                                         tmp_path: Path) -> None:
    tenant = await make_tenant(sessions)
    await make_vault(settings, sessions).store(tenant, "hubspot", SECRET, actor=SYSTEM)
    # A real database without the audit table: every audit insert fails.
    broken_engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'no-audit-table.db'}")
    broken = AuditTrail(session_factory(broken_engine))
    try:
        vault = make_vault(settings, sessions, audit=broken)
        assert (await vault.load(tenant, ACTOR)).secret == SECRET
        assert (await vault.load(tenant, ACTOR)).secret == SECRET
    finally:
        await broken_engine.dispose()
    assert broken.failures == 2


async def test_store_replaces_and_bumps_the_version_and_clears_reconnect(
        settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    vault = make_vault(settings, sessions)
    tenant = await make_tenant(sessions)
    first = await vault.store(tenant, "hubspot", SECRET, actor=SYSTEM)
    assert await vault.mark_needs_reconnect(first, SYSTEM)
    assert not await vault.mark_needs_reconnect(first, SYSTEM)  # stale version: compare-and-swap refuses
    assert (await vault.load(tenant, ACTOR)).needs_reconnect
    second = await vault.store(tenant, "hubspot", {"access_token": "new"}, actor=SYSTEM)
    loaded = await vault.load(tenant, ACTOR)
    assert second.id == first.id and loaded.version == 3 and not loaded.needs_reconnect
    assert loaded.secret == {"access_token": "new"}


async def test_a_tenant_without_credentials_is_a_lookup_error(settings: Settings,
                                                              sessions: async_sessionmaker[AsyncSession]) -> None:
    with pytest.raises(CredentialNotFoundError):
        await make_vault(settings, sessions).load(await make_tenant(sessions), ACTOR)


async def test_warm_cache_decrypts_without_kms_calls_until_its_use_bound(
        settings: Settings, sessions: async_sessionmaker[AsyncSession], kms_server: KmsServer) -> None:
    tenant = await make_tenant(sessions)
    await make_vault(settings, sessions, kms_server.envelope()).store(tenant, "hubspot", SECRET, actor=SYSTEM)
    envelope = kms_server.envelope(cache=DataKeyCache(ttl_seconds=300, max_uses=5))
    reader = make_vault(settings, sessions, envelope)
    for _ in range(6):  # one miss fills the cache, five hits use it up
        assert (await reader.load(tenant, ACTOR)).secret == SECRET
    assert envelope.calls["Decrypt"] == 1
    await reader.load(tenant, ACTOR)
    assert envelope.calls["Decrypt"] == 2


async def test_cache_entries_expire_after_their_ttl(kms_server: KmsServer) -> None:
    now = [0.0]
    envelope = kms_server.envelope(cache=DataKeyCache(ttl_seconds=10, max_uses=100, clock=lambda: now[0]))
    context = {"tenant": "t", "provider": "hubspot", "row": "r"}
    plaintext, wrapped = await envelope.new_data_key(context)
    assert await envelope.unwrap(wrapped, context) == plaintext and envelope.calls["Decrypt"] == 0
    now[0] = 10.0
    assert await envelope.unwrap(wrapped, context) == plaintext and envelope.calls["Decrypt"] == 1


async def test_kms_refuses_a_wrapped_key_under_another_rows_context(kms_server: KmsServer) -> None:
    envelope: KmsEnvelope = kms_server.envelope(cache=DataKeyCache(ttl_seconds=0))
    _, wrapped = await envelope.new_data_key({"tenant": "a", "provider": "hubspot", "row": "1"})
    with pytest.raises(DecryptError, match="InvalidCiphertextException"):
        await envelope.unwrap(wrapped, {"tenant": "b", "provider": "hubspot", "row": "1"})
