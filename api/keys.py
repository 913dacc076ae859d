"""Public API keys: generation, storage as a hash, constant-time verification, scopes and revocation.

A key reads `crm_sk_<prefix>_<secret>`: the 12-hex-digit prefix finds the row (an indexed equality lookup,
never a scan over hashes) and the 256-bit secret is what proves possession. Only sha256(key) is stored.
A plain fast hash is the right tool here: slow password hashes (bcrypt, argon2) exist to make guessing
low-entropy human secrets expensive, and nobody can enumerate 2**256 random secrets however fast the hash,
while a slow hash would add ~100 ms to every API request. The full key is shown once, at creation.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request

from api.context import context_of
from api.errors import Problem
from store.base import utcnow
from store.models import ApiKey, Tenant

KEY_PREFIX = "crm_sk_"
SCOPES: dict[str, str] = {
    "crm:read": "read records from the tenant's CRM (POST /v1/crm/lookup, /v1/crm/search, /v1/crm/list-recent)",
    "crm:write": "create and update records in the tenant's CRM (POST /v1/crm/create-record, /v1/crm/update-record)",
    "leads:write": "hand leads to the lifecycle (POST /v1/leads)",
}
# Writing last_used_at on every request would turn each API call into a row update; once a minute is plenty
# for "is this key still in use?".
LAST_USED_GRANULARITY = timedelta(minutes=1)
# Compared against when the prefix is unknown, so an unknown prefix costs the same hash-and-compare.
_DUMMY_HASH = hashlib.sha256(b"no such key").digest()


@dataclass(frozen=True)
class IssuedKey:
    """A freshly created key. `key` is the only time the secret exists outside the caller's hands."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    prefix: str
    scopes: tuple[str, ...]
    key: str = field(repr=False)


@dataclass(frozen=True)
class KeyPrincipal:
    """Who is calling through the public API: a key bound to one tenant, with its scopes."""

    key_id: uuid.UUID
    tenant_id: uuid.UUID
    prefix: str
    scopes: frozenset[str]


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def generate_key() -> tuple[str, str]:
    """A new (key, prefix)."""
    prefix = secrets.token_hex(6)
    return f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}", prefix


def parse_prefix(key: str) -> str | None:
    """The lookup prefix of a well-formed key, else None."""
    if not key.startswith(KEY_PREFIX):
        return None
    prefix, sep, secret = key[len(KEY_PREFIX):].partition("_")
    if not sep or len(prefix) != 12 or not secret or any(c not in "0123456789abcdef" for c in prefix):
        return None
    return prefix


def validate_scopes(scopes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(SCOPES)}")
    if not scopes:
        raise ValueError(f"a key needs at least one scope; known: {', '.join(SCOPES)}")
    return tuple(sorted(set(scopes)))


async def create_api_key(sessions: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID, name: str,
                         scopes: list[str] | tuple[str, ...]) -> IssuedKey:
    """Store a new key for the tenant; LookupError for an unknown tenant, ValueError for bad scopes."""
    wanted = validate_scopes(scopes)
    key, prefix = generate_key()
    async with sessions.begin() as session:
        if await session.get(Tenant, tenant_id) is None:
            raise LookupError(f"no tenant {tenant_id}")
        row = ApiKey(tenant_id=tenant_id, name=name, prefix=prefix, key_hash=hash_key(key), scopes=list(wanted))
        session.add(row)
        await session.flush()
        key_id = row.id
    return IssuedKey(id=key_id, tenant_id=tenant_id, name=name, prefix=prefix, scopes=wanted, key=key)


async def list_api_keys(sessions: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID) -> list[ApiKey]:
    async with sessions() as session:
        rows = await session.scalars(select(ApiKey).where(ApiKey.tenant_id == tenant_id)
                                     .order_by(ApiKey.created_at, ApiKey.prefix))
        return list(rows)


async def revoke_api_key(sessions: async_sessionmaker[AsyncSession], tenant_id: uuid.UUID, ident: str) -> ApiKey:
    """Revoke the tenant's key named by id or prefix; LookupError when the tenant has no such key.

    Scoped by tenant so an operator of one tenant can never revoke (or learn of) another tenant's key.
    """
    async with sessions.begin() as session:
        query = select(ApiKey).where(ApiKey.tenant_id == tenant_id)
        try:
            query = query.where(ApiKey.id == uuid.UUID(ident))
        except ValueError:
            query = query.where(ApiKey.prefix == (parse_prefix(ident) or ident))
        row = await session.scalar(query)
        if row is None:
            raise LookupError(f"tenant {tenant_id} has no key {ident!r}")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        return row


async def verify_api_key(sessions: async_sessionmaker[AsyncSession], presented: str) -> KeyPrincipal:
    """The principal for a presented key, or a 401 problem. Revocation takes effect on the next request."""
    prefix = parse_prefix(presented)
    async with sessions() as session:
        found = (await session.execute(select(ApiKey, Tenant.status).join(Tenant, Tenant.id == ApiKey.tenant_id)
                                       .where(ApiKey.prefix == prefix))).first() if prefix else None
        row, tenant_status = found if found is not None else (None, None)
        matches = hmac.compare_digest(hash_key(presented), row.key_hash if row is not None else _DUMMY_HASH)
        if row is None or not matches:
            raise Problem(401, "invalid-api-key", "The API key is not valid.", headers=_challenge())
        if row.revoked_at is not None:
            raise Problem(401, "api-key-revoked", "The API key has been revoked.", headers=_challenge())
        if tenant_status == "disabled":
            raise Problem(403, "tenant-disabled", "The tenant of this API key is disabled.")
        principal = KeyPrincipal(key_id=row.id, tenant_id=row.tenant_id, prefix=row.prefix,
                                 scopes=frozenset(row.scopes))
        await _touch(session, row.id, row.last_used_at)
    return principal


async def _touch(session: AsyncSession, key_id: uuid.UUID, last_used_at: datetime | None) -> None:
    now = utcnow()
    if last_used_at is not None and now - last_used_at < LAST_USED_GRANULARITY:
        return
    await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))
    await session.commit()


def presented_key(request: Request) -> str:
    """The key from `Authorization: Bearer …` or `X-API-Key`, or a 401 problem."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    key = value.strip() if scheme.lower() == "bearer" else request.headers.get("x-api-key", "").strip()
    if not key:
        raise Problem(401, "missing-credentials", "An API key is required (Authorization: Bearer <key>).",
                      headers=_challenge())
    return key


async def require_api_key(request: Request, scope: str) -> KeyPrincipal:
    """Authenticate the caller's API key and check it carries `scope` (403 otherwise)."""
    principal = await verify_api_key(context_of(request).sessions, presented_key(request))
    if scope not in principal.scopes:
        raise Problem(403, "insufficient-scope", f"This API key lacks the {scope} scope.", required_scope=scope)
    return principal


def _challenge() -> dict[str, str]:
    return {"WWW-Authenticate": 'Bearer realm="crm-sor-api"'}
