"""The full fault campaign: every part a real OS process, faults on a seeded schedule, a ledger per tenant.

PostgreSQL, Redis and a file-backed Temporal dev server of the campaign's own, a `crm-sor api` and two
`crm-sor worker` processes configured by `CRM_*` variables only (tests/support/campaign_stack.py), and two tenants
connected through the API's operator routes with credentials in the vault: HubSpot by OAuth (refresh tokens) and
Tekmetric by form (client credentials), both CRMs sandboxes on loopback. Under steady agent load over HTTP on
both tenants, plus one erasure a minute (operator route, subjects created for it), the schedule injects: worker
SIGKILLs while they talk to a CRM, a Temporal restart (same database file), a PostgreSQL restart, Redis stopped
for a minute, the API killed and restarted, CRM storms (5xx, 429 + Retry-After, timeouts, responses lost after
the write, expired tokens) and a revoked HubSpot refresh token that the operator fixes by reconnecting. Then it
lets the system settle (bounded) and audits each tenant (campaign_ledger.audit) and each erasure.

    report = await run_full_campaign(FullCampaign(seed=3))
    print("\\n".join(report.lines()))
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
from starlette.requests import ClientDisconnect

from api.auth import mint_token
from sandboxes import hubspot as hubspot_sandbox
from sandboxes import tekmetric as tekmetric_sandbox
from settings import Settings
from store.session import create_engine, session_factory
from tests.support.campaign_agents import AgentLoad, answered
from tests.support.campaign_crms import TekmetricChecks
from tests.support.campaign_erasures import Erasures
from tests.support.campaign_ledger import HubSpotChecks, Ledger, audit, settle
from tests.support.campaign_stack import Stack


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


@dataclass
class Report:
    plan: FullCampaign
    ledgers: dict[str, Ledger] = field(default_factory=dict)
    faults: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase: up, load, settle, audit, down

    def mark(self, phase: str, since: float) -> float:
        now = time.monotonic()
        self.phases[phase] = now - since
        return now

    @property
    def clean(self) -> bool:
        return bool(self.ledgers) and all(ledger.clean for ledger in self.ledgers.values())

    def lines(self) -> list[str]:
        out = [f"--- full campaign, seed {self.plan.seed}: {self.plan.seconds:g} s of load, "
               f"{self.seconds:.0f} s in all ({', '.join(f'{k} {v:.0f} s' for k, v in self.phases.items())})",
               f"faults {dict(sorted(self.faults.items()))}"]
        for slug, ledger in self.ledgers.items():
            out += [f"[{slug}]", *ledger.lines()]
        return out


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


def operator_headers(settings: Settings, tenant: uuid.UUID) -> dict[str, str]:
    token = mint_token(settings, subject="campaign-operator", role="operator", tenant_id=tenant, ttl=timedelta(hours=3))
    return {"Authorization": f"Bearer {token}"}


def agent_headers(settings: Settings, slug: str, tenant: uuid.UUID) -> dict[str, str]:
    token = mint_token(settings, subject=f"campaign-agent-{slug}", role="agent", tenant_id=tenant,
                       ttl=timedelta(hours=3))
    return {"Authorization": f"Bearer {token}"}


async def connect_hubspot(stack: Stack, settings: Settings, tenant: uuid.UUID, patience: float = 180) -> None:
    """The operator's OAuth connect through the API: start, the provider's consent page, our callback."""
    deadline = time.monotonic() + patience
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30, follow_redirects=True) as http:
        while True:
            start = await answered(http, "POST", f"/api/operator/tenants/{tenant}/connect/oauth/start", {},
                                   headers=operator_headers(settings, tenant), patience=patience)
            with contextlib.suppress(httpx.TransportError):
                if start.response is not None and start.response.status_code == 200:
                    done = await http.get(start.response.json()["authorize_url"])
                    if done.status_code == 200 and done.json()["status"] == "active":
                        return
            if time.monotonic() > deadline:
                raise RuntimeError("the HubSpot reconnect did not succeed")
            await asyncio.sleep(2)


async def connect_tenants(stack: Stack, settings: Settings) -> dict[str, uuid.UUID]:
    """Create the two tenants (`crm-sor tenant create`) and connect them through the API's operator routes."""
    hs, tk = stack.sandboxes["hubspot"], stack.sandboxes["tekmetric"]
    configs = {"hubspot": {"base_url": hs.url, "token_url": f"{hs.url}/oauth/v3/token",
                           "authorize_url": f"{hs.url}/oauth/authorize", "portal_id": hs.state.portal_id},
               "tekmetric": {"base_url": tk.url, "token_url": tk.url + tekmetric_sandbox.TOKEN_PATH}}
    tenants = {}
    for slug, config in configs.items():
        out = await asyncio.to_thread(stack.cli, "tenant", "create", "--name", f"Campaign {slug}", "--provider",
                                      slug, "--settings", json.dumps(config))
        tenants[slug] = uuid.UUID(out.split()[1])  # "tenant <id> created (…)"
    await connect_hubspot(stack, settings, tenants["hubspot"])
    form = {"client_id": tk.state.tokens.client_id, "client_secret": tk.state.tokens.client_secret,
            "shop_id": tk.state.shop_id, "environment": "sandbox"}
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:
        answer = await http.post(f"/api/operator/tenants/{tenants['tekmetric']}/connect/credentials", json=form,
                                 headers=operator_headers(settings, tenants["tekmetric"]))
    if answer.status_code != 200 or answer.json()["status"] != "active":
        raise RuntimeError(f"the Tekmetric connect failed: {answer.status_code}")
    return tenants


async def _drive(load: AgentLoad, until: float, rate: float, rng: random.Random) -> None:
    while time.monotonic() < until:
        await load.step()
        await asyncio.sleep(rng.expovariate(rate))


def _not_abandoned(record: logging.LogRecord) -> bool:
    """The sandboxes' uvicorn logs each request a timed-out client abandoned (ClientDisconnect): expected here."""
    return not (record.exc_info and record.exc_info[0] is ClientDisconnect)


async def run_full_campaign(plan: FullCampaign) -> Report:
    began, rng = time.monotonic(), random.Random(plan.seed)
    logging.getLogger("uvicorn.error").addFilter(_not_abandoned)
    report = Report(plan)
    stack = await asyncio.to_thread(Stack.start, {"hubspot": hubspot_sandbox.create_app(),
                                                  "tekmetric": tekmetric_sandbox.create_app()})
    try:
        await asyncio.to_thread(stack.start_api)
        for _ in range(2):
            await asyncio.to_thread(stack.start_worker)
        settings = Settings(env="test", database_url=stack.database_url)
        tenants = await connect_tenants(stack, settings)
        loads: dict[str, AgentLoad] = {}
        clients = [httpx.AsyncClient(base_url=stack.api_url, timeout=15, headers=agent_headers(settings, slug, tenant))
                   for slug, tenant in tenants.items()]
        for (slug, _), client in zip(tenants.items(), clients, strict=True):
            loads[slug] = AgentLoad(client, random.Random(rng.random()), leads_and_cases=slug == "hubspot")
        faults = Faults(stack, settings, tenants, random.Random(rng.random()), plan)
        erasures = Erasures(clients[0], operator_headers(settings, tenants["hubspot"]), random.Random(rng.random()))
        started = report.mark("up", began)
        until = started + plan.seconds
        await asyncio.gather(faults.play(started), erasures.run(until, plan.erasure_every),
                             *(_drive(load, until, plan.rate, random.Random(rng.random())) for load in loads.values()))
        for sandbox in stack.sandboxes.values():  # the storms are over
            knobs = sandbox.state.knobs
            knobs.fail_next = knobs.limit_next = knobs.fail_after_next = 0
            knobs.latency_seconds = 0.0
        phase = report.mark("load", started)
        report.faults = faults.done + Counter({k: n for k, n in stack.kills.items() if k.startswith("worker ")})
        del report.faults["worker"]  # counted as mid-request or idle kills
        engine = create_engine(stack.database_url)  # made after the restarts: no stale pooled connections
        sessions = session_factory(engine)
        try:
            settled = await asyncio.gather(*(settle(sessions, t, plan.settle_seconds) for t in tenants.values()))
            phase = report.mark("settle", phase)
            erased = Ledger()  # before the audit, whose guarded purge-of-everything also removes synced rows
            await erasures.check(erased, sessions, stack.sandboxes["hubspot"].state,
                                 patience=max(60.0, plan.settle_seconds / 2))
            checks = {"hubspot": HubSpotChecks(stack.sandboxes["hubspot"].state),
                      "tekmetric": TekmetricChecks(stack.sandboxes["tekmetric"].state)}
            for (slug, tenant), settled_in in zip(tenants.items(), settled, strict=True):
                ledger = await audit(sessions, tenant, None, loads[slug].expected, settled_in=settled_in,
                                     checks=checks[slug])
                ledger.refused, ledger.worker_kills = loads[slug].refused, sum(
                    n for k, n in stack.kills.items() if k.startswith("worker"))
                report.ledgers[slug] = ledger
            hubspot = report.ledgers["hubspot"]
            hubspot.erasures_requested, hubspot.erasure_problems = erased.erasures_requested, erased.erasure_problems
            hubspot.erasures_completed, hubspot.erasures_retried = erased.erasures_completed, erased.erasures_retried
            hubspot.erasure_retry_reasons = erased.erasure_retry_reasons
            phase = report.mark("audit", phase)
        finally:
            await engine.dispose()
        for client in clients:
            await client.aclose()
    finally:
        down = time.monotonic()
        await asyncio.to_thread(stack.close)
        report.mark("down", down)
        report.seconds = time.monotonic() - began
    return report
