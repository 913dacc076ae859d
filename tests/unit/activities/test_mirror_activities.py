"""The mirror pass in an ActivityEnvironment against the HubSpot sandbox (real driver, real database)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.mirror import MirrorActivities
from activities.types import MirrorPassInput
from store.models import Customer, ErasureHold, ErasureRequest, Incident, Lead, QualificationState
from tests.support.lifecycle import row_of
from tests.support.sandbox_provider import SandboxDriverProvider
from tests.support.tenants import create_tenant

WINDOW = timedelta(days=30)


@pytest_asyncio.fixture(loop_scope="session")
async def drivers(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[SandboxDriverProvider]:
    provider = SandboxDriverProvider(sessions)
    yield provider
    await provider.aclose()


async def _add(sessions: async_sessionmaker[AsyncSession], *rows: object) -> None:
    async with sessions() as session, session.begin():
        session.add_all(rows)


def _pass(tenant: uuid.UUID) -> MirrorPassInput:
    return MirrorPassInput(tenant_id=tenant, retention={"customers": WINDOW})


async def test_a_customer_the_crm_already_knows_is_updated_not_duplicated(
        sessions: async_sessionmaker[AsyncSession], drivers: SandboxDriverProvider) -> None:
    hubspot = drivers.state("hubspot")
    known = hubspot.add("contacts", {"firstname": "Old", "lastname": "Name", "phone": "(415) 555-0199"})
    tenant = await create_tenant(sessions)
    row = Customer(id=uuid.uuid4(), tenant_id=tenant, name="Katherine Johnson", phone="+14155550199",
                   fields={"city": "Hampton"}, sync_attempts=0)
    await _add(sessions, row)
    result = await ActivityEnvironment().run(MirrorActivities(sessions, drivers).mirror_pass, _pass(tenant))
    assert (result.synced, result.backlog, result.state, result.next_attempt_at) == (1, 0, "synced", None)
    assert known.properties["lastname"] == "Johnson" and known.properties["city"] == "Hampton"
    assert len(hubspot.records["contacts"]) == 1
    synced = await row_of(sessions, "customers", tenant, row.id)
    assert synced.crm_external_id == known.id and synced.purge_after == synced.synced_at + WINDOW


@pytest.mark.parametrize("provider", ["hubspot", "salesforce"])
async def test_a_batch_of_customers_is_matched_in_a_few_calls_and_known_callers_are_not_duplicated(
        sessions: async_sessionmaker[AsyncSession], drivers: SandboxDriverProvider, provider: str) -> None:
    crm = drivers.state(provider)
    if provider == "hubspot":
        by_phone = crm.add("contacts", {"lastname": "Caller", "phone": "(628) 555-0007"}).id
        by_email = crm.add("contacts", {"lastname": "Writer", "email": "c42@example.com"}).id
        count = lambda: len(crm.records["contacts"])  # noqa: E731
    else:
        by_phone = crm.add("Contact", {"LastName": "Caller", "Phone": "(628) 555-0007"})["Id"]
        by_email = crm.add("Contact", {"LastName": "Writer", "Email": "c42@example.com"})["Id"]
        count = lambda: len(list(crm.live("Contact")))  # noqa: E731
    tenant = await create_tenant(sessions, provider=provider)
    rows = [Customer(id=uuid.uuid4(), tenant_id=tenant, name=f"Caller {n}", phone=f"+1 628 555 {n:04d}",
                     email="c42@example.com" if n == 42 else None, sync_attempts=0) for n in range(150)]
    await _add(sessions, *rows)
    before = sum(crm.calls.values())
    result = await ActivityEnvironment().run(MirrorActivities(sessions, drivers).mirror_pass, _pass(tenant))
    assert (result.synced, result.backlog) == (150, 0)
    assert count() == 150  # 148 created, the two callers the CRM knew updated in place
    assert (await row_of(sessions, "customers", tenant, rows[7].id)).crm_external_id == by_phone
    assert (await row_of(sessions, "customers", tenant, rows[42].id)).crm_external_id == by_email
    # HubSpot: 2 chunks x (email read or phone search, key read, upsert) + the update; Salesforce: a few queries
    # (packed under its URI limit), the key reads, one upsert and one update collection. Never a call per row.
    assert sum(crm.calls.values()) - before <= (8 if provider == "hubspot" else 12)


async def test_hubspot_lead_of_a_customer_lands_on_the_customers_contact(
        sessions: async_sessionmaker[AsyncSession], drivers: SandboxDriverProvider) -> None:
    hubspot = drivers.state("hubspot")
    contact = hubspot.add("contacts", {"lastname": "Vaughan"})
    tenant = await create_tenant(sessions)
    customer = Customer(id=uuid.uuid4(), tenant_id=tenant, name="Dorothy Vaughan", crm_external_id=contact.id,
                        sync_state="synced", sync_attempts=0)
    lead = Lead(id=uuid.uuid4(), tenant_id=tenant, customer_id=customer.id, fields={"timeline": "3 months"},
                sync_attempts=0)
    qualification = QualificationState(id=uuid.uuid4(), tenant_id=tenant, lead_id=lead.id, stage="hot", score=90,
                                       sync_attempts=0)
    await _add(sessions, customer, lead, qualification)
    activities = MirrorActivities(sessions, drivers)
    env = ActivityEnvironment()
    assert (await env.run(activities.mirror_pass, _pass(tenant))).synced == 2  # the lead, then its qualification
    lead_row = await row_of(sessions, "leads", tenant, lead.id)
    qualification_row = await row_of(sessions, "qualification_states", tenant, qualification.id)
    assert lead_row.crm_external_id == qualification_row.crm_external_id == contact.id
    assert contact.properties["lifecyclestage"] == "lead"
    # Unmapped details are not dropped: they land in the lead's free-text field, with the qualification.
    assert contact.properties["message"] == "Qualification: hot, score 90\ntimeline: 3 months"
    assert len(hubspot.records["contacts"]) == 1


async def test_unmapped_content_blocks_only_its_row_and_counts_the_attempt(
        sessions: async_sessionmaker[AsyncSession], drivers: SandboxDriverProvider) -> None:
    tenant = await create_tenant(sessions)
    row = Customer(id=uuid.uuid4(), tenant_id=tenant, name="Mary Jackson", fields={"shoe_size": "7"},
                   sync_attempts=0)
    fine = Customer(id=uuid.uuid4(), tenant_id=tenant, name="Katherine Coleman", sync_attempts=0)
    await _add(sessions, row, fine)
    result = await ActivityEnvironment().run(MirrorActivities(sessions, drivers).mirror_pass, _pass(tenant))
    assert (result.synced, result.failed, result.backlog, result.state, result.more) == (1, 1, 1, "blocked", False)
    failed = await row_of(sessions, "customers", tenant, row.id)
    assert (failed.sync_state, failed.sync_attempts, failed.last_sync_error) == ("blocked", 1, "unmapped_fields")
    assert failed.retry_at is not None and result.next_attempt_at == failed.retry_at  # a slow look, not a loop


async def test_a_5xx_fails_its_row_with_backoff_and_keeps_no_provider_text(
        sessions: async_sessionmaker[AsyncSession], drivers: SandboxDriverProvider) -> None:
    drivers.state("hubspot").knobs.fail_next = 1
    tenant = await create_tenant(sessions)
    row = Customer(id=uuid.uuid4(), tenant_id=tenant, name="Annie Easley", sync_attempts=0)
    await _add(sessions, row)
    result = await ActivityEnvironment().run(MirrorActivities(sessions, drivers).mirror_pass, _pass(tenant))
    failed = await row_of(sessions, "customers", tenant, row.id)
    assert (result.failed, result.state) == (1, "retrying")
    assert (failed.sync_state, failed.last_sync_error) == ("retrying", "unavailable:503")
    assert failed.retry_at is not None and result.next_attempt_at == failed.retry_at


async def test_a_row_held_by_an_erasure_is_not_written(
        sessions: async_sessionmaker[AsyncSession], drivers: SandboxDriverProvider) -> None:
    hubspot = drivers.state("hubspot")
    before = len(hubspot.records.get("contacts", {}))
    tenant = await create_tenant(sessions)
    row = Customer(id=uuid.uuid4(), tenant_id=tenant, name="Forget Me", sync_attempts=0)
    request = ErasureRequest(id=uuid.uuid4(), tenant_id=tenant, subject_hash="h", requested_by="op")
    await _add(sessions, row, request)
    await _add(sessions, ErasureHold(request_id=request.id, tenant_id=tenant, table_name="customers", row_id=row.id))
    result = await ActivityEnvironment().run(MirrorActivities(sessions, drivers).mirror_pass, _pass(tenant))
    assert (result.synced, result.failed) == (0, 0) and len(hubspot.records.get("contacts", {})) == before
    held = await row_of(sessions, "customers", tenant, row.id)
    assert (held.sync_state, held.last_sync_error, held.sync_attempts) == ("pending", "erasure_hold", 0)


async def test_one_incident_per_tenant_and_failure_kind_with_its_row_count(
        sessions: async_sessionmaker[AsyncSession], drivers: SandboxDriverProvider) -> None:
    tenant = await create_tenant(sessions)
    old = datetime.now(UTC) - timedelta(days=2)
    rows = [Customer(id=uuid.uuid4(), tenant_id=tenant, name=f"x{i}", sync_attempts=3 + i, sync_state="retrying",
                     last_sync_error="unavailable:503", created_at=old, retry_at=old + timedelta(days=9))
            for i in range(4)]
    await _add(sessions, *rows)
    activities, env = MirrorActivities(sessions, drivers), ActivityEnvironment()
    assert (await env.run(activities.mirror_pass, _pass(tenant))).incidents_opened == 1
    assert (await env.run(activities.mirror_pass, _pass(tenant))).incidents_opened == 0
    async with sessions() as session:
        incidents = (await session.execute(select(Incident).where(Incident.tenant_id == tenant))).scalars().all()
    assert [(i.status, i.failure_kind, i.row_count, i.attempts, i.last_error) for i in incidents] == \
        [("open", "unavailable", 4, 6, "unavailable:503")]


class _Exploding:
    """A DriverProvider whose driver blows up with customer content in the exception (as a library might)."""

    def __init__(self, content: str) -> None:
        self.content = content

    def open(self, tenant_id: uuid.UUID, actor: object) -> object:
        raise RuntimeError(f"could not handle {self.content}")


async def test_an_unexpected_exception_reaches_history_as_its_type_only(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = await create_tenant(sessions)
    row = Customer(id=uuid.uuid4(), tenant_id=tenant, name="Hedy Lamarr", email="hedy@example.com", sync_attempts=0)
    await _add(sessions, row)
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(MirrorActivities(sessions, _Exploding("hedy@example.com")).mirror_pass,  # type: ignore[arg-type]
                                        _pass(tenant))
    assert raised.value.message == "mirror_pass failed: RuntimeError" and raised.value.type == "RuntimeError"
    assert not raised.value.non_retryable and "hedy" not in str(raised.value)
