"""Activity boundary models of the lifecycle (mirror, transcript, purge, incidents, sweep). Ids only."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class MirrorRecordInput(_Model):
    tenant_id: uuid.UUID
    table: str
    row_id: uuid.UUID
    retention: timedelta


class MirrorRecordResult(_Model):
    # synced | stale (changed during the write: write again) | waiting (dependency) | retry | gone | erased
    outcome: str
    purge_after: datetime | None = None


class PurgeRecordInput(_Model):
    tenant_id: uuid.UUID
    table: str
    row_id: uuid.UUID
    as_of: datetime  # the workflow's clock: a purge is never earlier than the timer that asked for it


class PurgeRecordResult(_Model):
    purged: bool
    exists: bool
    synced: bool = False
    purge_after: datetime | None = None


class IncidentInput(_Model):
    tenant_id: uuid.UUID
    table: str
    row_id: uuid.UUID


class IncidentResult(_Model):
    opened: bool


class SyncTranscriptInput(_Model):
    tenant_id: uuid.UUID
    conversation_id: uuid.UUID
    message_ids: list[uuid.UUID] = Field(default_factory=list)
    include_summary: bool = False
    conversation_retention: timedelta
    message_retention: timedelta


class SyncTranscriptResult(_Model):
    outcome: str  # synced | stale | waiting (its customer is not in the CRM yet) | retry | gone | erased
    messages_synced: int = 0
    conversation_synced: bool = False
    next_purge_after: datetime | None = None
    unsynced_message_ids: list[uuid.UUID] = Field(default_factory=list)  # waiting rows the workflow may not know


class PurgeTranscriptInput(_Model):
    tenant_id: uuid.UUID
    conversation_id: uuid.UUID
    as_of: datetime


class PurgeTranscriptResult(_Model):
    messages_purged: int
    conversation_purged: bool
    conversation_exists: bool
    conversation_synced: bool = False
    next_purge_after: datetime | None = None
    unsynced_message_ids: list[uuid.UUID] = Field(default_factory=list)


class SweepStepInput(_Model):
    as_of: datetime
    limit: int = 500
    older_than: timedelta = timedelta(0)


class SweepStepResult(_Model):
    count: int
