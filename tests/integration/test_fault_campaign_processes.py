"""A reduced full fault campaign in the test command: every part a real OS process (a PostgreSQL, Redis and
file-backed Temporal dev server of its own, `crm-sor api`, two `crm-sor worker`s configured by environment
variables, tenants connected through the API with credentials in the vault), HubSpot and Tekmetric sandboxes on
loopback, agent load over HTTP and erasures, while the schedule kills workers mid-request, restarts Temporal,
PostgreSQL and the API, stops Redis, storms the CRMs and revokes HubSpot's refresh token until the operator
reconnects. Each tenant's ledger must show nothing lost, stale, doubled or purged unsynced, and every erasure
completed with the CRM record gone. Rows may still be pending after the bounded settle (listed with their reason
in the ledger): production's backoff after a 429 storm, or a parked auth_error, can outlast it — slowness, not
loss. `bench/faults.py --full` runs the longer campaign and reports how each seed settled."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.campaign_full import run_full_campaign
from tests.support.campaign_schedule import FullCampaign

pytestmark = [pytest.mark.integration]


async def test_a_reduced_full_process_campaign_loses_nothing(tmp_path: Path) -> None:
    plan = FullCampaign(seed=18, seconds=60, rate=2, worker_kills=3, storms=3, redis_outage=20, erasure_every=30,
                        settle_seconds=180)
    report = await run_full_campaign(plan, tmp_path)  # the processes' logs, kept by pytest for a failure
    text = "\n".join(report.lines())
    assert set(report.ledgers) == {"hubspot", "tekmetric"}, text
    for kind in ("temporal", "postgres", "api", "redis", "revoke", "reconnect"):
        assert report.faults[kind] == 1, text
    assert report.faults["worker mid-request"] + report.faults["worker idle"] == 3, text
    for ledger in report.ledgers.values():
        assert ledger.accepted["customers"] > 0 and ledger.patches_accepted > 0, text
        assert not (ledger.lost or ledger.stale or ledger.duplicates or ledger.unsynced_purged), text
        assert all(ledger.synced[table] > 0 for table, n in ledger.accepted.items() if n), text  # it moved
    hubspot = report.ledgers["hubspot"]
    assert hubspot.erasures_requested == hubspot.erasures_completed == 2 and not hubspot.erasure_problems, text
