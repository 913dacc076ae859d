"""Hands stored inbound events to Temporal: one OutboundCallWorkflow per event, with a deterministic id.

Runs after the webhook's 2xx (a background task), so the provider's deadline never waits on Temporal. A row
stays `received` until its workflow is started; rows left so by a crash or a Temporal outage are picked up
again (`redispatch_stale`) by the next delivery that finds the last sweep more than a minute old.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta

from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.context import AppContext
from store import outbound
from store.base import utcnow
from workflows.outbound_types import OutboundCallInput, outbound_call_workflow_id

log = logging.getLogger(__name__)

WORKFLOW = "OutboundCallWorkflow"
STALE_AFTER = timedelta(minutes=1)
_last_sweep = {"at": 0.0}


async def dispatch(ctx: AppContext, events: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> int:
    """Start the workflow of each (tenant, event row); the number handed over (already started counts)."""
    if not events:
        return 0
    try:
        client = await ctx.temporal.client()
    except Exception as exc:  # Temporal away: the rows stay `received` and are redispatched later
        log.warning("inbound events not dispatched (%s); they will be redispatched", type(exc).__name__)
        return 0
    done: list[uuid.UUID] = []
    for tenant_id, row_id in events:
        try:
            await client.start_workflow(
                WORKFLOW, OutboundCallInput(tenant_id=tenant_id, event_row_id=row_id),
                id=outbound_call_workflow_id(tenant_id, row_id), task_queue=ctx.settings.temporal.task_queue,
                # Never a second run for one event, even after the first completed.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
        except WorkflowAlreadyStartedError:
            pass
        except Exception as exc:
            log.warning("inbound event not dispatched (%s)", type(exc).__name__)
            continue
        done.append(row_id)
    await _mark_dispatched(ctx, done)
    return len(done)


async def _mark_dispatched(ctx: AppContext, row_ids: list[uuid.UUID]) -> None:
    """Coalesce the status updates of a burst: whoever holds the lock writes everyone's ids in one statement,
    so a thousand deliveries cost a handful of UPDATEs instead of a thousand (the pool stays free for acks).
    Best effort: a row left `received` is only redispatched, and its workflow id makes that harmless."""
    state = ctx.extras.setdefault("webhook_dispatch", {"pending": set(), "lock": asyncio.Lock()})
    state["pending"].update(row_ids)
    async with state["lock"]:
        batch, state["pending"] = list(state["pending"]), set()
        if batch:
            async with ctx.sessions() as session, session.begin():
                await outbound.mark_events(session, batch, "dispatched", only_from="received")


async def redispatch_stale(ctx: AppContext, *, force: bool = False) -> int:
    """Dispatch rows stuck in `received` for over a minute (at most once a minute per process)."""
    if not force and time.monotonic() - _last_sweep["at"] < STALE_AFTER.total_seconds():
        return 0
    _last_sweep["at"] = time.monotonic()
    async with ctx.sessions() as session:
        rows = await outbound.stale_received(session, utcnow() - STALE_AFTER)
    return await dispatch(ctx, [(row.tenant_id, row.id) for row in rows])
