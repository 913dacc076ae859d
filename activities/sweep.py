"""Sweep activities: the safety net under the tenant mirrors, run by a Temporal Schedule.

- wake the mirror of every tenant with a row that fell through (due for longer than a grace period and still
  untried: no mirror is handling it) by queuing one `ensure` intent per tenant, which the relay delivers as a
  signal-with-start;
- purge synced rows past their window, in batches, with the guarded purge (the SQL refuses unsynced rows) —
  the only purge there is: no per-row timers;
- bring each tenant's `crm_sync_failure` incidents in line with its rows unsynced 24 hours after insert;
- drop delivered outbox entries after a day.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.contained import contained
from activities.types import SweepStepInput, SweepStepResult
from store import content, incidents, outbox, phone_index


class SweepActivities:
    """Activities of `SweepWorkflow`; each step works in bounded batches and heartbeats between them."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    def all(self) -> list[Callable[..., Any]]:
        return [self.sweep_enqueue_orphans, self.sweep_purge_overdue, self.sweep_escalate_stuck,
                self.sweep_prune_outbox]

    @activity.defn
    @contained
    async def sweep_enqueue_orphans(self, input: SweepStepInput) -> SweepStepResult:
        woken: set[uuid.UUID] = set()
        for table in content.MIRROR_ORDER:
            async with self._sessions() as session, session.begin():
                rows = await content.fell_through(session, table, input.as_of - input.older_than, input.limit)
                intents = []
                for tenant_id, row_id in rows:
                    if tenant_id not in woken and not await outbox.pending_for_tenant(session, tenant_id):
                        intents.append(outbox.intent_values(tenant_id, table, row_id, "ensure"))
                        woken.add(tenant_id)
                await outbox.add(session, intents)
            activity.heartbeat(table)
        return SweepStepResult(count=len(woken))

    @activity.defn
    @contained
    async def sweep_purge_overdue(self, input: SweepStepInput) -> SweepStepResult:
        purged = 0
        for table in content.PURGE_ORDER:
            while True:
                async with self._sessions() as session, session.begin():
                    batch = await content.purge(session, table, input.as_of, limit=input.limit)
                purged += batch
                activity.heartbeat(table, purged)
                if batch < input.limit:
                    break
        while True:  # the phone index (class c, derived from CRM records): entries past their TTL
            async with self._sessions() as session, session.begin():
                batch = await phone_index.purge_expired(session, input.as_of, input.limit)
            purged += batch
            activity.heartbeat("phone_index", purged)
            if batch < input.limit:
                break
        return SweepStepResult(count=purged)

    @activity.defn
    @contained
    async def sweep_escalate_stuck(self, input: SweepStepInput) -> SweepStepResult:
        opened, cutoff = 0, input.as_of - input.older_than
        async with self._sessions() as session:
            tenants = await incidents.tenants_with_stuck_rows(session, cutoff, input.limit)
        for tenant_id in tenants:
            async with self._sessions() as session, session.begin():
                opened += await incidents.escalate_tenant(session, tenant_id, cutoff)
            activity.heartbeat(str(tenant_id))
        return SweepStepResult(count=opened)

    @activity.defn
    @contained
    async def sweep_prune_outbox(self, input: SweepStepInput) -> SweepStepResult:
        async with self._sessions() as session, session.begin():
            pruned = await outbox.prune_relayed(session, input.older_than, input.as_of, input.limit)
        return SweepStepResult(count=pruned)
