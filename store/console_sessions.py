"""Operator console sign-ins: one row per browser session, found by the hash of its cookie (never the cookie).

A session is class (b): an operator id, the tenant an operator token was pinned to, a CSRF token and times —
no customer content. Signing out deletes the row, so a copied cookie stops working at once; expired rows
are pruned at each sign-in.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Index, String, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from store.base import Base, created_at, utcnow


class ConsoleSession(Base):
    __tablename__ = "console_sessions"
    __table_args__ = (Index("ix_console_sessions_expires", "expires_at"), {"info": {"data_class": "b"}})

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator: Mapped[str] = mapped_column(String(200))
    tenant_id: Mapped[uuid.UUID | None]  # set when the operator's credential is pinned to one tenant
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_at()
    expires_at: Mapped[datetime]


@dataclass(frozen=True)
class SignedIn:
    operator: str
    tenant_id: uuid.UUID | None
    csrf_token: str
    expires_at: datetime


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def open_session(session: AsyncSession, *, operator: str, tenant_id: uuid.UUID | None,
                       expires_at: datetime) -> tuple[str, SignedIn]:
    """A new session; returns the cookie value (shown once, stored only hashed) and what it grants."""
    await session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < utcnow()))
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    session.add(ConsoleSession(token_hash=token_hash(token), operator=operator[:200], tenant_id=tenant_id,
                               csrf_token=csrf, expires_at=expires_at))
    return token, SignedIn(operator[:200], tenant_id, csrf, expires_at)


async def find_session(session: AsyncSession, token: str) -> SignedIn | None:
    row = (await session.execute(select(ConsoleSession).where(
        ConsoleSession.token_hash == token_hash(token), ConsoleSession.expires_at > utcnow()))).scalar()
    return None if row is None else SignedIn(row.operator, row.tenant_id, row.csrf_token, row.expires_at)


async def close_session(session: AsyncSession, token: str) -> None:
    await session.execute(delete(ConsoleSession).where(ConsoleSession.token_hash == token_hash(token)))
