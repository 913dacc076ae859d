"""Workflow boundary models for the mirror → retain → purge lifecycle and the sweep.

Everything here ends up in Temporal history, so it carries ids, table names, states and durations only:
never a field value, a transcript line or an error message from a provider.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class LifecyclePolicy(_Model):
    """How hard a lifecycle pushes a CRM write. Defaults are production's; tests shorten them."""

    escalate_after: timedelta = timedelta(hours=24)  # unsynced this long -> one crm_sync_failure incident
    first_backoff: timedelta = timedelta(seconds=2)
    max_backoff: timedelta = timedelta(minutes=10)  # the capped backoff between CRM attempts
    blocked_poll: timedelta = timedelta(minutes=15)  # auth_error / invalid data: look again this often
    # Waiting for a customer/lead to reach the CRM: woken by `dependency_synced`; look again this often anyway.
    dependency_poll: timedelta = timedelta(minutes=5)
    # One CRM write attempt: a few driver calls, each bounded by the driver's HTTP timeouts (15 s read, 5 s
    # connect). The heartbeat timeout is what notices a killed worker: its write is retried within seconds.
    crm_timeout: timedelta = timedelta(seconds=60)
    crm_heartbeat: timedelta = timedelta(seconds=10)


class RecordLifecycleInput(_Model):
    """One class-(c) row's lifecycle: workflow id `mirror:{tenant_id}:{table}:{row_id}`."""

    tenant_id: uuid.UUID
    table: str
    row_id: uuid.UUID
    provider: str
    retention: timedelta  # the table's window (settings may override); workflows read no settings
    policy: LifecyclePolicy = Field(default_factory=LifecyclePolicy)
    # State carried across continue-as-new.
    escalate_at: datetime | None = None
    incident_open: bool = False


class TranscriptInput(_Model):
    """A conversation's lifecycle: its transcript note on the customer, fed by message batches.

    Workflow id `mirror:{tenant_id}:conversations:{conversation_id}` (messages ride on it).
    """

    tenant_id: uuid.UUID
    conversation_id: uuid.UUID
    provider: str
    conversation_retention: timedelta
    message_retention: timedelta
    debounce: timedelta = timedelta(seconds=5)  # flush a batch this long after its first message…
    max_batch: int = 25  # …or as soon as this many are waiting
    policy: LifecyclePolicy = Field(default_factory=LifecyclePolicy)
    # Continue-as-new after this many batches (0: only when the server suggests it); tests exercise the path.
    continue_as_new_after: int = 0
    # State carried across continue-as-new.
    pending_message_ids: list[uuid.UUID] = Field(default_factory=list)
    conversation_synced: bool = False
    next_purge_after: datetime | None = None
    escalate_at: datetime | None = None
    incident_open: bool = False


class RecordChanged(_Model):
    """Signal `changed`: the agent updated the row; mirror it (a partial update) before any purge."""

    outbox_id: int | None = None


class Redrive(_Model):
    """Signal `redrive`: an operator asks for a CRM write attempt now."""

    requested_by: str | None = None


class ConnectionFixed(_Model):
    """Signal `connection_fixed`: the tenant's CRM connection works again; stop waiting on auth_error."""

    tenant_id: uuid.UUID | None = None


class DependencySynced(_Model):
    """Signal `dependency_synced`: the row this one waited for (its customer, its lead) is in the CRM now."""

    table: str | None = None


class MessagesAdded(_Model):
    """Signal `messages_added`: new message rows of this conversation to mirror (ids only)."""

    message_ids: list[uuid.UUID]


class LifecycleResult(_Model):
    outcome: str  # purged | gone (row no longer exists) | erased (an erasure holds it)
    crm_writes: int = 0


class SweepInput(_Model):
    batch_size: int = 500
    escalate_after: timedelta = timedelta(hours=24)
    orphan_grace: timedelta = timedelta(minutes=10)  # the relay's head start before the sweep steps in
    keep_relayed: timedelta = timedelta(days=1)


class SweepResult(_Model):
    enqueued: int
    purged: int
    escalated: int
    pruned: int
