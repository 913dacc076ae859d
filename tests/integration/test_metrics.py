"""/metrics on the API and the worker, scraped for real: request counts by route template, backlog gauges
from the database, CRM calls by provider and error kind, decrypts, audit-write failures, rate-limit
fail-opens, and the Temporal SDK's own metrics. Counters are process-wide, so tests compare deltas."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
import pytest_asyncio
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

import telemetry
from api.ratelimit import RateLimiter
from drivers import errors
from drivers.base import CrmObject
from drivers.hubspot import HubSpotDriver
from drivers.transport import OutboundGuard
from sandboxes import hubspot as hubspot_sandbox
from settings import MetricsSettings, RateLimitSettings, Settings
from store.models import Customer, MirrorOutbox
from store.outbox import intent_values
from store.session import create_engine, session_factory
from tests.support.ports import free_port
from tests.support.tenants import create_tenant
from tests.unit.api.support import SandboxProvider, agent_headers, client_for, context
from vault.audit import AuditTrail
from vault.connections import Actor
from vault.credentials import CredentialVault
from vault.provider import VaultDriverProvider

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
SINCE = datetime(2020, 1, 1, tzinfo=UTC)
ACTOR = Actor(type="platform_operator", id="metrics-test", purpose="test")


def parse(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def registry() -> Samples:
    return parse(generate_latest().decode())


@pytest_asyncio.fixture(loop_scope="session")
async def api(settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
              ) -> AsyncIterator[tuple[httpx.AsyncClient, SandboxProvider]]:
    provider = SandboxProvider()
    quick = settings.model_copy(update={"metrics": MetricsSettings(cache_seconds=0.0),
                                        "rate_limits": RateLimitSettings(redis_timeout_seconds=2.0)})
    async with client_for(context(quick, engine, sessions, provider)) as client:
        yield client, provider


async def test_api_scrape_counts_routes_and_reads_the_backlog(
        api: tuple[httpx.AsyncClient, SandboxProvider], settings: Settings,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    client, provider = api
    tenant = await create_tenant(sessions)
    provider.connect(tenant)
    before = parse((await client.get("/metrics")).text)
    lookup = await client.post("/api/tools/crm_lookup_customer", json={"email": "secret.person@example.com"},
                               headers=agent_headers(settings, tenant))
    assert lookup.status_code == 200
    assert (await client.post("/api/tools/crm_lookup_customer", json={"phone": "+14155550100"})).status_code == 401
    assert (await client.get("/no/such/path/secret.person@example.com")).status_code == 404
    async with sessions() as session, session.begin():
        session.add(Customer(tenant_id=tenant, name="Row", sync_state="pending"))
        session.add(Customer(tenant_id=tenant, name="Row", sync_state="synced"))
        session.add(MirrorOutbox(**intent_values(tenant, "customers", uuid.uuid4(), "create")))
    scrape = await client.get("/metrics")
    assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
    after = parse(scrape.text)
    tool = {"route": "/api/tools/crm_lookup_customer", "method": "POST"}
    for status, expected in (("200", 1), ("401", 1)):
        delta = value(after, "crm_sor_api_requests_total", **tool, status=status) - value(
            before, "crm_sor_api_requests_total", **tool, status=status)
        assert delta == expected, status
    assert value(after, "crm_sor_api_requests_total", route="unmatched", method="GET", status="404") >= 1
    assert value(after, "crm_sor_outbox_backlog", tenant=str(tenant)) == 1
    assert value(after, "crm_sor_outbox_oldest_age_seconds", tenant=str(tenant)) >= 0
    for state in ("pending", "synced"):
        assert value(after, "crm_sor_mirror_rows", tenant=str(tenant), table="customers", state=state) == 1
    assert value(after, "crm_sor_ratelimit_decisions_total", rule="per_tenant_tool", outcome="allowed") >= 1
    assert "secret.person" not in scrape.text and "4155550100" not in scrape.text  # no content in labels


async def test_crm_calls_are_counted_by_provider_and_error_kind() -> None:
    app = hubspot_sandbox.create_app()
    state: hubspot_sandbox.HubSpotState = app.state.sandbox
    before = registry()
    hooks = telemetry.crm_call_metrics_hooks("hubspot")
    async with httpx.AsyncClient(base_url=HubSpotDriver.base_url, event_hooks=hooks,
                                 transport=telemetry.MeteredTransport(httpx.ASGITransport(app=app), "hubspot"),
                                 headers={"authorization": f"Bearer {state.tokens.issue_access()}"}) as client:
        driver = HubSpotDriver(client, {"portal_id": state.portal_id})
        await driver.list_recent(CrmObject.CUSTOMER, since=SINCE)
        state.knobs.limit_next = 1
        with pytest.raises(errors.RateLimitedError):
            await driver.list_recent(CrmObject.CUSTOMER, since=SINCE)
    closed = free_port()
    async with httpx.AsyncClient(transport=telemetry.MeteredTransport(httpx.AsyncHTTPTransport(), "hubspot")) as c:
        with pytest.raises(httpx.ConnectError):
            await c.get(f"http://127.0.0.1:{closed}/")
    after = registry()
    for outcome in ("ok", "rate_limited", "transport_error"):
        delta = value(after, "crm_sor_crm_calls_total", provider="hubspot", outcome=outcome) - value(
            before, "crm_sor_crm_calls_total", provider="hubspot", outcome=outcome)
        assert delta == 1, outcome
    assert value(after, "crm_sor_crm_call_seconds_count", provider="hubspot") > value(
        before, "crm_sor_crm_call_seconds_count", provider="hubspot")


async def test_the_vault_providers_own_clients_count_calls_that_got_no_answer(
        settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    """The clients `VaultDriverProvider` builds itself (production's) are metered below HTTP too."""
    closed = free_port()
    tenant = await create_tenant(sessions, settings={"base_url": f"http://127.0.0.1:{closed}",
                                                    "token_url": f"http://127.0.0.1:{closed}/oauth/v3/token"})
    vault = CredentialVault.from_settings(settings, sessions)
    await vault.store(tenant, "hubspot", {"auth": "bearer", "access_token": "tok-123456789"}, actor=ACTOR)
    provider = VaultDriverProvider(sessions, vault, outbound=OutboundGuard(allow_loopback=True))
    before = registry()
    async with provider.open(tenant, ACTOR) as driver:
        with pytest.raises(errors.UnavailableError):
            await driver.list_recent(CrmObject.CUSTOMER, since=SINCE)
    after = registry()
    assert value(after, "crm_sor_crm_calls_total", provider="hubspot", outcome="transport_error") - value(
        before, "crm_sor_crm_calls_total", provider="hubspot", outcome="transport_error") >= 1


async def test_decrypts_audit_failures_and_fail_opens_are_counted(
        settings: Settings, sessions: async_sessionmaker[AsyncSession], tmp_path: object) -> None:
    before = registry()
    tenant = await create_tenant(sessions)
    vault = CredentialVault.from_settings(settings, sessions)
    await vault.store(tenant, "hubspot", {"auth": "bearer", "access_token": "tok-123456789"}, actor=ACTOR)
    await vault.load(tenant, ACTOR)
    broken = create_engine(f"sqlite+aiosqlite:///{tmp_path}/missing-dir/audit.db")
    assert await AuditTrail(session_factory(broken)).record(ACTOR, tenant, "credential.decrypt") is False
    await broken.dispose()
    closed = free_port()
    limiter = RateLimiter(RateLimitSettings(redis_timeout_seconds=0.5), f"redis://127.0.0.1:{closed}/0")
    assert (await limiter.hit("per_api_key", "k")).degraded
    await limiter.aclose()
    after = registry()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("crm_sor_credential_decrypts_total", provider="hubspot", outcome="ok") == 1
    assert delta("crm_sor_audit_write_failures_total", action="credential.decrypt") == 1
    assert delta("crm_sor_ratelimit_decisions_total", rule="per_api_key", outcome="fail_open_error") == 1


async def test_worker_serves_its_metrics_and_temporals(settings: Settings, temporal_env: WorkflowEnvironment) -> None:
    import worker

    ports = MetricsSettings(worker_port=free_port(), temporal_port=free_port())
    address = temporal_env.client.service_client.config.target_host
    configured = settings.model_copy(update={"metrics": ports, "temporal": settings.temporal.model_copy(
        update={"address": address})})
    stop = asyncio.Event()
    with telemetry.worker_telemetry(ports):  # as `crm-sor worker` runs it
        running = asyncio.create_task(worker.run_worker(configured, stop))
        await _scrape_worker(ports, stop, running)


async def _scrape_worker(ports: MetricsSettings, stop: asyncio.Event, running: asyncio.Task[None]) -> None:
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            own = temporal = ""
            for _ in range(200):  # until the worker is up and has polled once
                try:
                    own = (await http.get(f"http://127.0.0.1:{ports.worker_port}/metrics")).text
                    temporal = (await http.get(f"http://127.0.0.1:{ports.temporal_port}/metrics")).text
                except httpx.TransportError:
                    pass
                if "temporal_request" in temporal and "crm_sor_crm_calls" in own:
                    break
                await asyncio.sleep(0.1)
        assert "crm_sor_credential_decrypts" in own and "crm_sor_crm_calls" in own
        assert "temporal_request" in temporal, temporal[:500]
    finally:
        stop.set()
        await running
