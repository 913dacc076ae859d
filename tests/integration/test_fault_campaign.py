"""A reduced combined fault campaign in the test command: agent load while worker processes are SIGKILLed and
the CRM storms (5xx, 429 + Retry-After, responses lost after the write, expired tokens). The ledger must show
nothing lost, nothing doubled, nothing stale (every accepted PATCH in the CRM) and nothing purged unsynced.
`bench/faults.py` runs the longer campaign with more seeds."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from settings import Settings
from tests.support.campaign import Campaign, run_campaign

pytestmark = [pytest.mark.integration]


async def test_reduced_campaign_loses_nothing(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client) -> None:
    plan = Campaign(seed=20, seconds=40, rate=6, workers=2, kills=3, storms=4, settle_seconds=150)
    ledger = await run_campaign(temporal_client, settings, engine, sessions, plan)
    report = "\n".join(ledger.lines())
    assert ledger.worker_kills == 3 and ledger.accepted["customers"] > 0 and ledger.patches_accepted > 0, report
    assert ledger.settled_in is not None, report
    assert ledger.clean, report
    assert ledger.synced["messages"] == ledger.accepted["messages"], report
