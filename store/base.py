"""Declarative base, portable column types and the sync columns every class-(c) table carries.

Data classes (DESIGN §2) are declared per table in `__table_args__ = {"info": {...}}`:
  a = configuration, b = operational metadata without customer content,
  c = customer content (mirrored to the CRM, purged after `retention_days`), d = audit/security.
`store/schema_gate.py` refuses a schema where any table lacks its class.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, Integer, String, Text, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on both PostgreSQL and SQLite (which would hand back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# BIGINT autoincrement is not a rowid alias on SQLite; INTEGER is, so use it there.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[str]: JSON}


class SyncState(enum.StrEnum):
    """The one vocabulary of sync states: a row's (`sync_state`, the API), and the tenant mirror's search
    attribute `CrmSyncState` (the state of its rows as a whole). README "Sync states" says the same."""

    PENDING = "pending"  # accepted, not in the CRM yet (queued, or waiting for the row it hangs off)
    RETRYING = "retrying"  # the last CRM attempt failed with something time fixes (5xx, 429): retried with backoff
    BLOCKED = "blocked"  # the last attempt failed with something a person fixes (auth, invalid data): waits for it
    SYNCED = "synced"  # the CRM holds this version; purged after `purge_after`


def uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(primary_key=True, default=uuid.uuid4)


def created_at() -> Mapped[datetime]:
    return mapped_column(default=utcnow)


class ContentRow:
    """Columns of every class-(c) row: its tenant and its mirror state in the tenant's CRM.

    `last_sync_error` holds an error type and status code, never a provider message (which may echo
    customer content).
    """

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    sync_state: Mapped[str] = mapped_column(String(16), default=SyncState.PENDING.value, index=True)
    crm_external_id: Mapped[str | None] = mapped_column(String(255))
    synced_at: Mapped[datetime | None]
    sync_attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_sync_error: Mapped[str | None] = mapped_column(Text)
    purge_after: Mapped[datetime | None] = mapped_column(index=True)
    # When the tenant mirror may try an unsynced row again (None: at once). Set with backoff on a failure,
    # cleared by an update, a redrive, or its dependency reaching the CRM.
    retry_at: Mapped[datetime | None]


SYNC_COLUMNS = ("sync_state", "crm_external_id", "synced_at", "sync_attempts", "last_sync_error", "purge_after",
                "retry_at")
