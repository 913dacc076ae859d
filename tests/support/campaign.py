"""A combined fault campaign on one machine: steady agent load while workers are SIGKILLed and the CRM storms.

Real parts throughout: the Temporal dev server handed in, the database, worker *processes*
(tests/support/worker_process.py) on a HubSpot sandbox served on loopback, the agent API (in-process) with its
outbox relay running. A seeded schedule decides the load and the faults, so a run can be repeated. After the
load it lets the system settle and `campaign_ledger.audit` checks the promise (see there).

    ledger = await run_campaign(client, settings, engine, sessions, Campaign(seed=7, seconds=60))
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.relay import running
from sandboxes import hubspot as hubspot_sandbox
from sandboxes.serve import serve_in_thread
from settings import Settings
from tests.support.campaign_ledger import Expected, Ledger, audit, settle
from tests.support.lifecycle import agent_api, relay_for
from tests.support.tenants import create_tenant
from workflows.types import MirrorPolicy

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Campaign:
    """What to run: `seconds` of load at about `rate` agent requests/s, `workers` worker processes, and
    `kills` SIGKILLs spread over the run (each killed worker restarted 1–3 s later), plus CRM storms."""

    seed: int = 1
    seconds: float = 60.0
    rate: float = 8.0
    workers: int = 2
    kills: int = 4
    storms: int = 4
    settle_seconds: float = 180.0
    # Production's policy but a 30 s cap on the backoff (production: 10 min), so the run settles in minutes.
    max_backoff: float = 30.0


@dataclass
class Load:
    """The agent's side: what it was told was accepted (2xx), which is what the CRM must end up holding."""

    api: httpx.AsyncClient
    rng: random.Random
    expected: Expected = field(default_factory=Expected)
    refused: int = 0  # non-2xx answers: nothing accepted, nothing owed

    async def step(self) -> None:
        roll, exp = self.rng.random(), self.expected
        if roll < 0.3 or not exp.conversations:
            await self._conversation()
        elif roll < 0.55:
            conversation = self.rng.choice(sorted(exp.conversations))
            turns = [self._turn() for _ in range(self.rng.randint(1, 4))]
            answer = await self._send("POST", f"/api/agent/conversations/{conversation}/messages",
                                      {"messages": turns})
            if answer is not None:
                exp.messages.setdefault(conversation, []).extend(t["text"] for t in turns)
        elif roll < 0.7:
            # A HubSpot lead of a known customer is that customer's contact: one lead per customer, so a later
            # lead cannot overwrite an earlier one's details there (that is the CRM's model, not a loss).
            free = sorted(set(exp.customers) - {lead["customer"] for lead in exp.leads.values()})
            customer = self.rng.choice(free) if free and self.rng.random() < 0.7 else None
            body: dict[str, Any] = {"fields": {"timeline": f"in {self.rng.randint(1, 12)} months"}}
            if customer is None:
                body["fields"] |= {"first_name": "Walk", "last_name": f"In{self.rng.randint(0, 10**6)}"}
            else:
                body["customer_id"] = customer
            answer = await self._send("POST", "/api/agent/leads", body)
            if answer is not None:
                exp.leads[answer["id"]] = {"status": "new", "fields": dict(body["fields"]), "customer": customer}
        elif roll < 0.8:
            customer = self.rng.choice(sorted(exp.customers))
            subject = f"Case {self.rng.randint(0, 10**6)}"
            answer = await self._send("POST", "/api/agent/cases", {"customer_id": customer, "subject": subject})
            if answer is not None:
                exp.cases[answer["id"]] = subject
        elif roll < 0.93 and exp.leads:
            lead = self.rng.choice(sorted(exp.leads))
            status = self.rng.choice(["contacted", "qualified", "unqualified"])
            budget = f"{self.rng.randint(1, 9)}00k"
            if await self._send("PATCH", f"/api/agent/leads/{lead}",
                                {"status": status, "fields": {"budget_note": budget}}) is not None:
                exp.leads[lead]["status"] = status
                exp.leads[lead]["fields"]["budget_note"] = budget
                exp.patches += 1
        else:
            conversation = self.rng.choice(sorted(exp.conversations))
            summary = f"Summary {self.rng.randint(0, 10**6)}"
            if await self._send("PATCH", f"/api/agent/conversations/{conversation}", {"summary": summary}) \
                    is not None:
                exp.summaries[conversation] = summary
                exp.patches += 1

    async def _conversation(self) -> None:
        n = self.rng.randint(0, 10**6)
        turns = [self._turn() for _ in range(self.rng.randint(1, 5))]
        answer = await self._send("POST", "/api/agent/conversations", {
            "customer": {"name": f"Caller Number{n}", "email": f"caller{n}@example.com"}, "messages": turns})
        if answer is not None:
            self.expected.customers[answer["customer_id"]] = f"Number{n}"
            self.expected.conversations.add(answer["id"])
            self.expected.messages[answer["id"]] = [t["text"] for t in turns]

    def _turn(self) -> dict[str, str]:
        return {"turn_id": uuid.uuid4().hex[:12], "role": self.rng.choice(["customer", "agent"]),
                "text": f"line {uuid.uuid4().hex[:10]}"}

    async def _send(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        response = await self.api.request(method, path, json=body)
        if response.status_code >= 300:
            self.refused += 1
            return None
        answer: dict[str, Any] = response.json()
        return answer


class Workers:
    """Worker processes on one task queue; `kill()` SIGKILLs one, `restart()` replaces it."""

    def __init__(self, client: Client, settings: Settings, task_queue: str, sandbox_url: str) -> None:
        self._args = ["--temporal", client.service_client.config.target_host, "--task-queue", task_queue,
                      "--database-url", settings.database_url, "--sandbox", f"hubspot={sandbox_url}"]
        self.processes: list[asyncio.subprocess.Process] = []
        self.killed = 0

    async def start(self) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.support.worker_process", *self._args, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE)
        assert process.stdout is not None
        assert await asyncio.wait_for(process.stdout.readline(), 60) == b"worker ready\n"
        self.processes.append(process)

    async def kill(self, rng: random.Random) -> None:
        victim = self.processes.pop(rng.randrange(len(self.processes)))
        victim.kill()  # SIGKILL: no graceful shutdown, activities in flight are abandoned mid-write
        await victim.wait()
        self.killed += 1

    async def stop(self) -> None:
        for process in self.processes:
            process.kill()
            await process.wait()
        self.processes.clear()


async def _faults(plan: Campaign, rng: random.Random, workers: Workers, crm: hubspot_sandbox.HubSpotState,
                  started: float) -> None:
    """The seeded schedule: kills and storms at random moments of the run, in order."""
    events = [(rng.uniform(0.1, 0.9) * plan.seconds, "kill") for _ in range(plan.kills)]
    events += [(rng.uniform(0.05, 0.9) * plan.seconds, "storm") for _ in range(plan.storms)]
    for at, kind in sorted(events):
        await asyncio.sleep(max(0.0, started + at - time.monotonic()))
        if kind == "kill":
            await workers.kill(rng)
            await asyncio.sleep(rng.uniform(1, 3))
            await workers.start()
        else:
            _storm(crm, rng)


def _storm(crm: hubspot_sandbox.HubSpotState, rng: random.Random) -> None:
    """One CRM misbehaviour: 5xx, 429 with Retry-After, lost responses after the write, or expired tokens."""
    kind = rng.choice(["5xx", "429", "lost", "tokens"])
    if kind == "5xx":
        crm.knobs.fail_status, crm.knobs.fail_next = rng.choice([500, 502, 503]), rng.randint(5, 20)
    elif kind == "429":
        crm.knobs.retry_after, crm.knobs.limit_next = "2", rng.randint(5, 15)
    elif kind == "lost":
        crm.knobs.fail_after_route, crm.knobs.fail_after_next = None, rng.randint(2, 6)
    else:
        crm.tokens.expire_all()


async def run_campaign(client: Client, settings: Settings, engine: AsyncEngine,
                       sessions: async_sessionmaker[AsyncSession], plan: Campaign) -> Ledger:
    rng = random.Random(plan.seed)
    tenant, task_queue = await create_tenant(sessions), f"campaign-{uuid.uuid4()}"
    app = hubspot_sandbox.create_app()
    crm: hubspot_sandbox.HubSpotState = app.state.sandbox
    served = serve_in_thread(app)
    workers = Workers(client, settings, task_queue, served.base_url)
    try:
        for _ in range(plan.workers):
            await workers.start()
        policy = MirrorPolicy(max_backoff=timedelta(seconds=plan.max_backoff))
        relay = relay_for(engine, sessions, client, task_queue, tenants=[tenant], policy=policy)
        async with running(relay), agent_api(settings, engine, sessions, tenant, relay=relay) as api:
            load = Load(api, random.Random(rng.random()))
            started = time.monotonic()
            faults = asyncio.create_task(_faults(plan, random.Random(rng.random()), workers, crm, started))
            while time.monotonic() - started < plan.seconds:
                await load.step()
                await asyncio.sleep(rng.expovariate(plan.rate))
            await faults
            crm.knobs.fail_next = crm.knobs.limit_next = crm.knobs.fail_after_next = 0  # the storm is over
            settled = await settle(sessions, tenant, plan.settle_seconds)
            ledger = await audit(sessions, tenant, crm, load.expected, settled_in=settled)
            ledger.refused, ledger.worker_kills = load.refused, workers.killed
            return ledger
    finally:
        await workers.stop()
        with contextlib.suppress(Exception):
            served.stop()
