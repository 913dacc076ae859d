"""Workflow boundary models of the tenant mirror and the sweep.

Everything here ends up in Temporal history, so it carries ids, table names, states, counts and durations
only: never a field value, a transcript line or an error message from a provider.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class MirrorPolicy(_Model):
    """How hard the mirror pushes CRM writes. Defaults are production's; tests shorten them."""

    escalate_after: timedelta = timedelta(hours=24)  # unsynced this long after insert -> counted in an incident
    first_backoff: timedelta = timedelta(seconds=2)  # a failed row's first wait; doubles per attempt…
    max_backoff: timedelta = timedelta(minutes=10)  # …up to this
    blocked_poll: timedelta = timedelta(minutes=15)  # auth_error / invalid data: look again this often
    batch_size: int = 200  # rows per table per pass
    # One pass: a batch of driver calls, each bounded by the driver's HTTP timeouts. The heartbeat timeout is
    # what notices a killed worker: its pass is retried within seconds (the ledger makes that safe).
    pass_timeout: timedelta = timedelta(minutes=5)
    pass_heartbeat: timedelta = timedelta(seconds=10)


class MirrorInput(_Model):
    """A tenant's mirror: workflow id `mirror:{tenant_id}`, started (or woken) by the relay."""

    tenant_id: uuid.UUID
    provider: str
    retention: dict[str, timedelta] = Field(default_factory=dict)  # per-table overrides from settings
    policy: MirrorPolicy = Field(default_factory=MirrorPolicy)
    # Continue-as-new after this many passes (the server's suggestion comes first); tests use a small number.
    passes_per_run: int = 500
    synced_before: int = 0  # rows synced by earlier runs of this chain (for the result)


class Wake(_Model):
    """Signal `wake`: the tenant has news (new or changed rows, a row that fell through): pass again now."""

    reason: str | None = None


class Redrive(_Model):
    """Signal `redrive`: an operator asked for the tenant's failed rows to be tried now (also unparks)."""

    requested_by: str | None = None


class ConnectionFixed(_Model):
    """Signal `connection_fixed`: the tenant's CRM connection works again; stop waiting on auth_error."""

    tenant_id: uuid.UUID | None = None


class MirrorResult(_Model):
    synced: int  # rows the CRM took during this chain of runs
    passes: int


class SweepInput(_Model):
    batch_size: int = 500
    # The purge deletes in larger batches: each batch costs fixed round trips (bench/purge.py: ~48k rows/s at 500,
    # ~200k at 10,000 on PostgreSQL), and a purge transaction holds nothing else.
    purge_batch_size: int = 10_000
    escalate_after: timedelta = timedelta(hours=24)
    orphan_grace: timedelta = timedelta(minutes=10)  # a due row untried this long: its tenant's mirror is not running
    keep_relayed: timedelta = timedelta(days=1)


class SweepResult(_Model):
    enqueued: int  # tenants whose mirror was woken
    purged: int
    escalated: int
    pruned: int
