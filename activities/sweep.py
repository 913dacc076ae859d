"""Sweep activities: the safety net under the lifecycles, run by a Temporal Schedule.

- re-queue rows whose lifecycle may be missing (unsynced past a grace period, nothing in the outbox): the
  relay then starts their workflow with a use-existing policy, a no-op when it runs;
- purge synced rows past their window, in batches, with the same guarded statement as the lifecycle;
- open a `crm_sync_failure` incident for rows unsynced for 24 hours;
- drop delivered outbox entries after a day.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.contained import contained
from activities.types import SweepStepInput, SweepStepResult
from store import content, incidents, outbox, phone_index
from store.models import Message


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
        queued = 0
        for table in content.PURGE_ORDER:
            async with self._sessions() as session, session.begin():
                rows = await content.unsynced_before(session, table, input.as_of - input.older_than, input.limit)
                intents = []
                for tenant_id, row_id in rows:
                    if not await outbox.pending_for(session, table, row_id):
                        # Messages reach their conversation's transcript through `append`.
                        op = "append" if table == Message.__tablename__ else "ensure"
                        intents.append(outbox.intent_values(tenant_id, table, row_id, op))
                await outbox.add(session, intents)
            queued += len(intents)
            activity.heartbeat(table)
        return SweepStepResult(count=queued)

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
        opened = 0
        # A message's failure is its conversation's (one transcript note): one incident, not one per line.
        for table in (t for t in content.PURGE_ORDER if t != Message.__tablename__):
            async with self._sessions() as session, session.begin():
                opened += await incidents.escalate_stuck(session, table, input.as_of - input.older_than,
                                                         input.limit)
            activity.heartbeat(table)
        return SweepStepResult(count=opened)

    @activity.defn
    @contained
    async def sweep_prune_outbox(self, input: SweepStepInput) -> SweepStepResult:
        async with self._sessions() as session, session.begin():
            pruned = await outbox.prune_relayed(session, input.older_than, input.as_of, input.limit)
        return SweepStepResult(count=pruned)
