"""The outbox relay: moves mirror intents from the database into Temporal, at least once.

It runs as a background task of every API process (the writer of the outbox, so an insert nudges it and
mirroring starts within milliseconds; a poll interval picks up anything else) — not inside Temporal, since
its whole job is to keep working while Temporal is unreachable. Several processes may run it: on
PostgreSQL each claims a batch with `FOR UPDATE SKIP LOCKED` and holds the locks until the batch is
delivered; on SQLite (one writer, the embedded default) claim and mark are separate short transactions.
A batch is grouped per tenant: one signal-with-start of the tenant's mirror (`mirror:{tenant}`) however many
intents it holds, delivered concurrently — the rows themselves say what is left to do.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.context import AppContext
from api.lifecycle import Delivery, MirrorOptions, deliver
from store import outbox
from store.models import Tenant

log = logging.getLogger(__name__)

ClientSource = Callable[[], Awaitable[Client]]


class RelayError(RuntimeError):
    """Some deliveries of a batch failed; they stay in the outbox for the next round."""


class OutboxRelay:
    """Drains `mirror_outbox` into Temporal. `nudge()` after a commit; `run(stop)` as a background task."""

    def __init__(self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], client: ClientSource,
                 options: MirrorOptions, *, batch_size: int = 200, concurrency: int = 32,
                 poll_interval: float = 1.0, tenants: Collection[uuid.UUID] | None = None) -> None:
        self._sessions, self._client, self.options = sessions, client, options
        self._tenants = tenants  # a relay for some tenants only (None: all of them)
        self._skip_locked = engine.dialect.name == "postgresql"
        self._batch_size, self._poll_interval = batch_size, poll_interval
        self._limit = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._providers: dict[uuid.UUID, str] = {}
        self.delivered = 0

    def nudge(self) -> None:
        self._wake.set()

    async def run_once(self) -> int:
        """Deliver one batch; the number of outbox entries it settled (0: the outbox is empty).

        Raises `RelayError` after settling what went through when some workflows could not be reached.
        """
        client = await self._client()  # raises while Temporal is unreachable: nothing is claimed
        async with self._sessions() as session:
            async with session.begin():
                intents = await outbox.claim(session, self._batch_size, skip_locked=self._skip_locked,
                                             tenants=self._tenants)
                if not intents:
                    return 0
                deliveries, settled = await self._group(session, intents)
                if self._skip_locked:  # PostgreSQL: deliver while holding the claimed rows
                    done, failed = await self._deliver_all(client, deliveries)
                    await self._settle(session, settled + done, failed)
            if not self._skip_locked:
                done, failed = await self._deliver_all(client, deliveries)
                async with session.begin():
                    await self._settle(session, settled + done, failed)
        if failed:
            raise RelayError(f"{len(failed)} outbox entries not delivered")
        return len(settled) + len(done)

    async def drain(self) -> int:
        total = 0
        while (count := await self.run_once()) > 0:
            total += count
        return total

    async def run(self, stop: asyncio.Event) -> None:
        backoff = self._poll_interval
        while not stop.is_set():
            try:
                await self.drain()
                backoff = self._poll_interval
            except Exception as exc:  # Temporal or the database away: keep the intents, try again later
                log.warning("outbox relay paused: %s", type(exc).__name__)
                backoff = min(backoff * 2, 30.0)
            self._wake.clear()
            waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
            await asyncio.wait(waiters, timeout=backoff, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()

    async def _provider(self, session: AsyncSession, tenant_id: uuid.UUID) -> str | None:
        if tenant_id not in self._providers:
            tenant = await session.get(Tenant, tenant_id)
            if tenant is None:
                return None
            self._providers[tenant_id] = tenant.provider
        return self._providers[tenant_id]

    async def _group(self, session: AsyncSession, intents: list[outbox.Intent]
                     ) -> tuple[list[Delivery], list[int]]:
        """One delivery per tenant, and the intents that need none (their tenant is gone)."""
        deliveries: dict[uuid.UUID, Delivery] = {}
        nothing_to_do: list[int] = []
        for intent in intents:
            provider = await self._provider(session, intent.tenant_id)
            if provider is None:
                nothing_to_do.append(intent.id)
                continue
            delivery = deliveries.setdefault(intent.tenant_id,
                                             Delivery(intent.tenant_id, self.options.input(intent.tenant_id, provider)))
            delivery.outbox_ids.append(intent.id)
            delivery.redrive = delivery.redrive or intent.op == "redrive"
            delivery.reconnected = delivery.reconnected or intent.op == "reconnected"
        return list(deliveries.values()), nothing_to_do

    async def _deliver_all(self, client: Client, deliveries: list[Delivery]) -> tuple[list[int], list[int]]:
        async def one(delivery: Delivery) -> bool:
            async with self._limit:
                try:
                    await deliver(client, delivery, self.options.task_queue)
                    return True
                except Exception as exc:  # this workflow only; the others of the batch still go through
                    log.warning("relay could not deliver %s: %s", delivery.workflow_id, type(exc).__name__)
                    return False

        results = await asyncio.gather(*(one(d) for d in deliveries))
        done = [i for d, ok in zip(deliveries, results, strict=True) if ok for i in d.outbox_ids]
        failed = [i for d, ok in zip(deliveries, results, strict=True) if not ok for i in d.outbox_ids]
        return done, failed

    async def _settle(self, session: AsyncSession, done: list[int], failed: list[int]) -> None:
        await outbox.mark_relayed(session, done)
        await outbox.count_failed_attempt(session, failed)
        self.delivered += len(done)


@asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[OutboxRelay]:
    """Run the relay as a background task for the duration of the block (the API's lifespan)."""
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop), name="outbox-relay")
    try:
        yield relay
    finally:
        stop.set()
        await task


def relay_for(ctx: AppContext) -> OutboxRelay:
    """The relay of an API process: its engine, its lazily connected Temporal client, settings' windows."""
    options = MirrorOptions(task_queue=ctx.settings.temporal.task_queue,
                            retention_overrides=ctx.settings.retention.overrides_days)
    return OutboxRelay(ctx.engine, ctx.sessions, ctx.temporal.client, options)


@asynccontextmanager
async def serving(ctx: AppContext) -> AsyncIterator[None]:
    """For the API's lifespan: run this process's relay; ingest routes nudge it through `ctx.extras["relay"]`."""
    relay = ctx.extras.get("relay")
    if not isinstance(relay, OutboxRelay):
        relay = ctx.extras["relay"] = relay_for(ctx)
    async with running(relay):
        yield
