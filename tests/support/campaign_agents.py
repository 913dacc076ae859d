"""The agent and the operator of a full fault campaign, over HTTP against a `crm-sor api` process.

`AgentLoad` is the in-process campaign's `Load` (the same steps and the same `Expected` bookkeeping) made to
behave as a real agent against a server that may be down: every POST carries the agent's own id, and a request
that got no answer (connection refused or cut, 5xx, 429) is sent again until it is answered, so what the agent
was told was accepted is exactly what the CRM owes. A form CRM without leads or cases (Tekmetric) gets the steps
its CRM has: conversations, more messages, customer corrections and summaries.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from typing import Any

import httpx

from tests.support.campaign import Load

_OWN_IDS = ("/api/agent/conversations", "/api/agent/leads", "/api/agent/cases", "/api/agent/customers")


class AgentLoad(Load):
    """Agent steps with retries until answered (up to `patience` seconds per request)."""

    def __init__(self, api: httpx.AsyncClient, rng: random.Random, *, leads_and_cases: bool = True,
                 patience: float = 180.0) -> None:
        super().__init__(api, rng)
        self.leads_and_cases, self.patience = leads_and_cases, patience
        self.retries = 0

    async def step(self) -> None:
        if self.leads_and_cases:
            await super().step()
            return
        roll, exp = self.rng.random(), self.expected
        if roll < 0.35 or not exp.conversations:
            await self._conversation()
        elif roll < 0.7:
            conversation = self.rng.choice(sorted(exp.conversations))
            turns = [self._turn() for _ in range(self.rng.randint(1, 4))]
            if await self._send("POST", f"/api/agent/conversations/{conversation}/messages",
                                {"messages": turns}) is not None:
                exp.messages.setdefault(conversation, []).extend(t["text"] for t in turns)
        elif roll < 0.85:
            customer = self.rng.choice(sorted(exp.customers))
            last = f"Corrected{self.rng.randint(0, 10**6)}"
            if await self._send("PATCH", f"/api/agent/customers/{customer}", {"name": f"Caller {last}"}) is not None:
                exp.customers[customer] = last
                exp.patches += 1
        else:
            conversation = self.rng.choice(sorted(exp.conversations))
            summary = f"Summary {self.rng.randint(0, 10**6)}"
            if await self._send("PATCH", f"/api/agent/conversations/{conversation}", {"summary": summary}) \
                    is not None:
                exp.summaries[conversation] = summary
                exp.patches += 1

    async def _send(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        if method == "POST" and path in _OWN_IDS:
            body.setdefault("id", str(uuid.uuid4()))
            if isinstance(body.get("customer"), dict):
                body["customer"].setdefault("id", str(uuid.uuid4()))
        answer = await answered(self.api, method, path, body, patience=self.patience)
        self.retries += answer.retries
        if answer.response is None or answer.response.status_code >= 300:
            self.refused += 1
            return None
        found: dict[str, Any] = answer.response.json()
        return found


class Answer:
    def __init__(self, response: httpx.Response | None, retries: int) -> None:
        self.response, self.retries = response, retries


async def answered(api: httpx.AsyncClient, method: str, path: str, body: dict[str, Any] | None = None, *,
                   patience: float = 180.0, headers: dict[str, str] | None = None) -> Answer:
    """Send until the server answers with something other than 5xx/429 (None after `patience` seconds)."""
    deadline, retries = time.monotonic() + patience, 0
    while True:
        try:
            response: httpx.Response | None = await api.request(method, path, json=body, headers=headers)
        except httpx.TransportError:
            response = None
        if response is not None and response.status_code < 500 and response.status_code != 429:
            return Answer(response, retries)
        if time.monotonic() > deadline:
            return Answer(None, retries)
        retries += 1
        await asyncio.sleep(1.0)
