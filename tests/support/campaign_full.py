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
import logging
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from starlette.requests import ClientDisconnect
from temporalio.client import Client

from sandboxes import hubspot as hubspot_sandbox
from sandboxes import tekmetric as tekmetric_sandbox
from settings import Settings
from store.session import create_engine, session_factory
from tests.support.campaign_agents import AgentLoad
from tests.support.campaign_crms import TekmetricChecks
from tests.support.campaign_erasures import Erasures
from tests.support.campaign_ledger import HubSpotChecks, Ledger, audit, settle
from tests.support.campaign_schedule import Faults, FullCampaign
from tests.support.campaign_stack import Stack
from tests.support.campaign_tenants import agent_headers, connect_tenants, operator_headers


@dataclass
class Report:
    plan: FullCampaign
    ledgers: dict[str, Ledger] = field(default_factory=dict)
    faults: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase: up, load, settle, audit, down
    stuck: dict[str, dict[str, int]] = field(default_factory=dict)  # unsettled tenant: its running runs by state
    scratch: Path | None = None  # the processes' logs

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
               f"faults {dict(sorted(self.faults.items()))}", f"logs in {self.scratch}"]
        for slug, ledger in self.ledgers.items():
            out += [f"[{slug}]", *ledger.lines()]
            if slug in self.stuck:
                out.append(f"  running Temporal runs by CrmSyncState after the settle: {self.stuck[slug]}")
        return out


async def _drive(load: AgentLoad, until: float, rate: float, rng: random.Random) -> None:
    while time.monotonic() < until:
        await load.step()
        await asyncio.sleep(rng.expovariate(rate))


async def _runs_by_state(stack: Stack, tenant: uuid.UUID) -> dict[str, int]:
    try:
        client = await Client.connect(stack.temporal.address)
        states: Counter[str] = Counter()
        async for run in client.list_workflows(f'CrmTenant = "{tenant}" AND ExecutionStatus = "Running"'):
            states[str((run.search_attributes or {}).get("CrmSyncState", ["?"])[0])] += 1
        return dict(states)
    except Exception as exc:  # diagnostics only
        return {f"unavailable ({type(exc).__name__})": 0}


def _not_abandoned(record: logging.LogRecord) -> bool:
    """The sandboxes' uvicorn logs each request a timed-out client abandoned (ClientDisconnect): expected here."""
    return not (record.exc_info and record.exc_info[0] is ClientDisconnect)


async def run_full_campaign(plan: FullCampaign, scratch: Path | None = None) -> Report:
    """Run the plan; the processes' logs and Temporal's database stay in `scratch` (default: a new temp dir)."""
    began, rng = time.monotonic(), random.Random(plan.seed)
    logging.getLogger("uvicorn.error").addFilter(_not_abandoned)
    report = Report(plan)
    stack = await asyncio.to_thread(Stack.start, {"hubspot": hubspot_sandbox.create_app(),
                                                  "tekmetric": tekmetric_sandbox.create_app()}, scratch)
    report.scratch = stack.scratch
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
            for (slug, tenant), settled_in in zip(tenants.items(), settled, strict=True):
                if settled_in is None:  # evidence for whoever reads the ledger: parked, backing off, or gone?
                    report.stuck[slug] = await _runs_by_state(stack, tenant)
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
