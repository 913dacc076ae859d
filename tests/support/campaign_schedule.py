"""The full campaign's plan and its seeded fault schedule, played against the stack (tests/support/campaign_full.py)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass

from sandboxes import hubspot as hubspot_sandbox
from settings import Settings
from tests.support.campaign_stack import Stack
from tests.support.campaign_tenants import connect_hubspot


@dataclass(frozen=True)
class FullCampaign:
    seed: int = 1
    seconds: float = 240.0  # of agent load; the faults fall inside it
    rate: float = 2.0  # agent requests/s per tenant (two tenants)
    worker_kills: int = 10
    storms: int = 8
    temporal_restarts: int = 1
    postgres_restarts: int = 1
    redis_outage: float = 60.0  # seconds Redis is stopped (0: no outage)
    api_restarts: int = 1
    revoke_reconnect: bool = True
    erasure_every: float = 60.0  # seconds between erasures (0: none)
    settle_seconds: float = 300.0


def schedule(plan: FullCampaign, rng: random.Random) -> list[tuple[float, str]]:
    """(seconds into the load, fault) in order: the seeded plan."""
    at = plan.seconds
    events = [(rng.uniform(0.05, 0.9) * at, "worker") for _ in range(plan.worker_kills)]
    events += [(rng.uniform(0.05, 0.85) * at, "storm") for _ in range(plan.storms)]
    events += [(rng.uniform(0.2, 0.7) * at, "temporal") for _ in range(plan.temporal_restarts)]
    events += [(rng.uniform(0.2, 0.7) * at, "postgres") for _ in range(plan.postgres_restarts)]
    events += [(rng.uniform(0.2, 0.8) * at, "api") for _ in range(plan.api_restarts)]
    if plan.redis_outage:
        events.append((rng.uniform(0.1, 0.4) * at, "redis"))
    if plan.revoke_reconnect:
        events.append((rng.uniform(0.15, 0.5) * at, "revoke"))
    return sorted(events)


class Faults:
    """Plays the schedule against the stack; counts what it did."""

    def __init__(self, stack: Stack, settings: Settings, tenants: dict[str, uuid.UUID], rng: random.Random,
                 plan: FullCampaign) -> None:
        self.stack, self.settings, self.tenants, self.rng, self.plan = stack, settings, tenants, rng, plan
        self.done: Counter[str] = Counter()
        self._background: list[asyncio.Task[None]] = []

    async def play(self, started: float) -> None:
        for at, kind in schedule(self.plan, self.rng):
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            if kind == "worker":
                await asyncio.to_thread(self.stack.kill_worker, self.rng)
                await asyncio.sleep(self.rng.uniform(1, 3))
                await asyncio.to_thread(self.stack.start_worker)
            elif kind == "temporal":
                await asyncio.to_thread(self.stack.temporal.restart, self.rng.uniform(2, 8))
            elif kind == "postgres":
                await asyncio.to_thread(self.stack.postgres.restart, self.rng.uniform(1, 5))
            elif kind == "api":
                self.stack.kill_api()
                await asyncio.sleep(self.rng.uniform(2, 5))
                await asyncio.to_thread(self.stack.start_api)
            elif kind == "redis":
                self._background.append(asyncio.create_task(self._redis_outage()))
            elif kind == "revoke":
                self._background.append(asyncio.create_task(self._revoke_then_reconnect()))
            else:
                kind = self._storm()
            self.done[kind] += 1
        await asyncio.gather(*self._background)

    async def _redis_outage(self) -> None:
        await asyncio.to_thread(self.stack.redis.stop)
        await asyncio.sleep(self.plan.redis_outage)
        await asyncio.to_thread(self.stack.redis.start)

    async def _revoke_then_reconnect(self) -> None:
        tokens = self.stack.sandboxes["hubspot"].state.tokens
        tokens.revoke_refresh()  # the customer uninstalled the app, or HubSpot revoked the grant
        tokens.expire_all()
        await asyncio.sleep(self.rng.uniform(20, 40))  # until the operator notices and reconnects
        await connect_hubspot(self.stack, self.settings, self.tenants["hubspot"])
        self.done["reconnect"] += 1

    def _storm(self) -> str:
        slug = self.rng.choice(sorted(self.stack.sandboxes))
        state = self.stack.sandboxes[slug].state
        kind = self.rng.choice(["5xx", "429", "timeout", "lost", "tokens"])
        if kind == "5xx":
            state.knobs.fail_status, state.knobs.fail_next = self.rng.choice([500, 502, 503]), self.rng.randint(5, 20)
        elif kind == "429":
            state.knobs.retry_after, state.knobs.limit_next = "2", self.rng.randint(5, 15)
        elif kind == "lost":
            state.knobs.fail_after_route, state.knobs.fail_after_next = None, self.rng.randint(2, 6)
        elif kind == "tokens":
            state.tokens.expire_all()
        else:  # slower than the processes' 5 s outbound timeout, for a while
            self._background.append(asyncio.create_task(self._slow(state)))
        return f"storm {kind} ({slug})"

    async def _slow(self, state: hubspot_sandbox.HubSpotState) -> None:
        state.knobs.latency_seconds = 7.0
        await asyncio.sleep(self.rng.uniform(8, 15))
        state.knobs.latency_seconds = 0.0
