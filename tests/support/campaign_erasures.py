"""One erasure a minute during the full campaign, on HubSpot subjects created for it, and the check of each.

A subject is a caller recorded by the agent (a conversation creating the customer), erased a few seconds later
— synced to the CRM or still on its way — through the operator route `POST /api/tenant/forget`. Erased subjects
are never part of the load's expected set. After the run each erasure must be `completed`, the CRM must hold
neither the contact nor the transcript note, and our database no row of the customer.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sandboxes import hubspot as hubspot_sandbox
from store.models import Customer
from tests.support.campaign_agents import answered
from tests.support.campaign_ledger import Ledger


@dataclass
class Subject:
    customer_id: str
    email: str
    text: str
    request_id: str | None = None


@dataclass
class Erasures:
    agent: httpx.AsyncClient  # the API, with the agent's token by default
    operator: dict[str, str]  # the operator's headers for the forget routes
    rng: random.Random
    subjects: list[Subject] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    async def run(self, until: float, every: float) -> None:
        if not every:
            return
        next_at = time.monotonic() + every * self.rng.uniform(0.1, 0.3)
        while next_at < until:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            await self._one(len(self.subjects))
            next_at += every

    async def _one(self, n: int) -> None:
        subject = Subject(str(uuid.uuid4()), f"forget{n}-{uuid.uuid4().hex[:8]}@example.com",
                          f"please forget {uuid.uuid4().hex[:10]}")
        self.subjects.append(subject)
        created = await answered(self.agent, "POST", "/api/agent/conversations", {
            "id": str(uuid.uuid4()), "messages": [{"turn_id": "1", "role": "customer", "text": subject.text}],
            "customer": {"id": subject.customer_id, "name": f"Forget Me{n}", "email": subject.email}})
        if created.response is None or created.response.status_code >= 300:
            self.problems.append(f"erasure {n}: the subject was not accepted")
            return
        await asyncio.sleep(self.rng.uniform(0, 15))  # erased after its mirror, or while it is on its way
        asked = await answered(self.agent, "POST", "/api/tenant/forget",
                               {"customer_id": subject.customer_id, "email": subject.email}, headers=self.operator)
        if asked.response is None or asked.response.status_code >= 300:
            self.problems.append(f"erasure {n}: the request was not accepted")
            return
        subject.request_id = asked.response.json()["request_id"]

    async def check(self, ledger: Ledger, sessions: async_sessionmaker[AsyncSession],
                    crm: hubspot_sandbox.HubSpotState, patience: float) -> None:
        """Wait (bounded) for each erasure to finish, then check the CRM and our database; into `ledger`."""
        deadline = time.monotonic() + patience
        ledger.erasures_requested = len(self.subjects)
        ledger.erasure_problems += self.problems
        for n, subject in enumerate(self.subjects):
            if subject.request_id is None:
                continue
            status, detail = await self._finished(subject.request_id, deadline)
            if status == "needs_attention":  # e.g. a CRM step refused while the connection was revoked:
                retried = await answered(self.agent, "POST", f"/api/tenant/forget/{subject.request_id}/retry",
                                         headers=self.operator)  # the operator retries it, as documented
                ledger.erasures_retried += 1
                ledger.erasure_retry_reasons.append(f"erasure {n}: {detail}")
                if retried.response is not None and retried.response.status_code == 202:
                    status, detail = await self._finished(subject.request_id, deadline)
            found = self._left_over(subject, crm)
            async with sessions() as session:
                if await session.scalar(select(Customer.id).where(Customer.id == uuid.UUID(subject.customer_id))):
                    found.append("our customer row")
            if status != "completed":
                ledger.erasure_problems.append(f"erasure {n}: {status} {detail}")
            elif found:
                ledger.erasure_problems.append(f"erasure {n}: left {', '.join(found)}")
            else:
                ledger.erasures_completed += 1

    async def _finished(self, request_id: str, deadline: float) -> tuple[str, str]:
        """The request's status once it is no longer running (or at the deadline), and its outcomes in brief."""
        status, detail = "not answered", ""
        while time.monotonic() < deadline:
            answer = await answered(self.agent, "GET", f"/api/tenant/forget/{request_id}", headers=self.operator,
                                    patience=30)
            if answer.response is not None and answer.response.status_code == 200:
                body = answer.response.json()
                status = str(body["status"])
                detail = str(sorted({f"{o['object']}:{o['outcome']}:{o['error']}" for o in body["outcomes"]}))
                if body.get("error"):
                    detail += f" error {body['error']}"
                if status != "running":
                    break
            await asyncio.sleep(2)
        return status, detail

    @staticmethod
    def _left_over(subject: Subject, crm: hubspot_sandbox.HubSpotState) -> list[str]:
        left = []
        if any(r.properties.get("email") == subject.email for r in crm.records.get("contacts", {}).values()):
            left.append("the CRM contact")
        if any(not r.archived and subject.text in str(r.properties.get("hs_note_body", ""))
               for r in crm.records.get("notes", {}).values()):
            left.append("the CRM transcript note")
        return left
