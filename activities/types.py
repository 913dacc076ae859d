"""Activity boundary models of the tenant mirror and the sweep. Ids, counts, durations and codes only."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class MirrorPassInput(_Model):
    """One pass of a tenant's mirror over its due rows (the policy comes from the workflow's input)."""

    tenant_id: uuid.UUID
    # The workflow's clock: no moment of the pass is earlier (time-skipping tests, skewed hosts agree with timers).
    as_of: datetime | None = None
    retention: dict[str, timedelta] = Field(default_factory=dict)  # per table; missing: the model's window
    batch_size: int = 200  # rows per table per pass
    transcript_chunk: int = 50  # messages per transcript append
    first_backoff: timedelta = timedelta(seconds=2)
    max_backoff: timedelta = timedelta(minutes=10)
    blocked_poll: timedelta = timedelta(minutes=15)
    escalate_after: timedelta = timedelta(hours=24)


class MirrorPassResult(_Model):
    synced: int = 0  # rows the CRM now holds (messages included)
    failed: int = 0  # rows whose write failed this pass (each retried at its own `retry_at`)
    more: bool = False  # rows are due right now: pass again at once
    backlog: int = 0  # unsynced rows of the tenant
    state: str = "synced"  # the tenant's rows as a whole: pending | retrying | blocked | synced (SyncState names)
    next_attempt_at: datetime | None = None  # when the earliest unsynced row may be tried; None: nothing unsynced
    park: str | None = None  # auth_error | tenant_unavailable: nothing can be written until the connection is fixed
    wait: timedelta | None = None  # the provider (or our budget for it) says: no calls for this long
    incidents_opened: int = 0


class SweepStepInput(_Model):
    as_of: datetime
    limit: int = 500
    older_than: timedelta = timedelta(0)


class SweepStepResult(_Model):
    count: int
