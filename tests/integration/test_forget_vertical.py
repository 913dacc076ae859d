"""Erasure on CRMs without a delete: a Mindbody and a Tekmetric tenant's forget ends with `divergent` outcomes
(the operator must delete the client in the provider's own UI), an audit row for each, and the local rows gone;
what the provider can delete (a Tekmetric appointment) is deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

import worker as composition
from activities.erasure import ErasureActivities
from settings import Settings
from store.erasure import Subject
from store.models import Appointment, AuditLog, Customer, ErasureOutcome
from tests.integration.forget_support import EMAIL, NAME, PHONE, count_rows, create_request
from tests.support.sandbox_provider import SandboxDriverProvider
from tests.support.tenants import create_tenant
from workflows.forget import ForgetWorkflow
from workflows.forget_types import forget_workflow_id

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def _seed_crm(drivers: SandboxDriverProvider, slug: str) -> tuple[str, str]:
    """The subject as the provider holds it: (client/customer id, appointment id)."""
    state = drivers.state(slug)
    if slug == "mindbody":
        client = state.add_client({"FirstName": "Dana", "LastName": "Erase", "Email": EMAIL, "MobilePhone": PHONE})
        start = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT10:00:00")
        booking = state.add_appointment({"ClientId": client["Id"], "LocationId": state.location_id,
                                         "StaffId": state.staff_id, "SessionTypeId": state.session_type_id,
                                         "StartDateTime": start})
        return str(client["Id"]), str(booking["Id"])
    customer = state.add_customer({"firstName": "Dana", "lastName": "Erase", "email": [EMAIL],
                                   "phones": [{"number": PHONE, "primary": True}]})
    booking = state.add_appointment({"customerId": customer["id"], "title": "Brake check",
                                     "startTime": "2026-12-01T15:00:00Z", "endTime": "2026-12-01T16:00:00Z"})
    return str(customer["id"]), str(booking["id"])


@pytest.mark.parametrize(("slug", "expected"), [
    ("mindbody", {"customer": "divergent", "appointment": "divergent"}),
    # Tekmetric keeps a deleted appointment (with a deletedDate) and never purges it: archived, and an operator's.
    ("tekmetric", {"customer": "divergent", "appointment": "archived"}),
])
async def test_erasure_on_a_crm_without_delete_ends_divergent_with_an_audit_row(
        temporal_client: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession], task_queue: str,
        slug: str, expected: dict[str, str]) -> None:
    drivers = SandboxDriverProvider(sessions)
    tenant = await create_tenant(sessions, provider=slug, name=f"Erasure {slug}")
    customer_id, appointment_id = _seed_crm(drivers, slug)
    synced = {"sync_state": "synced", "synced_at": datetime.now(UTC)}
    async with sessions() as session, session.begin():
        customer = Customer(tenant_id=tenant, name=NAME, phone=PHONE, email=EMAIL, crm_external_id=customer_id,
                            **synced)
        session.add(customer)
        await session.flush()
        appointment = Appointment(tenant_id=tenant, customer_id=customer.id, starts_at=datetime.now(UTC),
                                  service="visit", crm_external_id=appointment_id, **synced)
        session.add(appointment)
    rows = {"customers": [customer.id], "appointments": [appointment.id]}
    forget = await create_request(sessions, settings, tenant, Subject(phone=PHONE, email=EMAIL))
    acts = ErasureActivities(sessions, drivers, settings.subject_hash_key.get_secret_value())
    try:
        async with composition.build_worker(temporal_client, settings, workflows=[ForgetWorkflow],
                                            activities=acts.all(), task_queue=task_queue):
            result = await temporal_client.execute_workflow(
                ForgetWorkflow.run, forget, id=forget_workflow_id(tenant, forget.subject_hash),
                task_queue=task_queue, execution_timeout=timedelta(minutes=2))
    finally:
        await drivers.aclose()

    assert result.status == "needs_attention"  # a divergence is left for the operator
    async with sessions() as session:
        outcomes = (await session.execute(select(ErasureOutcome).where(
            ErasureOutcome.request_id == forget.request_id))).scalars().all()
        audits = (await session.execute(select(AuditLog).where(
            AuditLog.request_id == str(forget.request_id), AuditLog.action == "erasure.crm_divergent"))).scalars().all()
    by_object = {(o.object, o.external_id): o.outcome for o in outcomes}
    assert by_object[("customer", customer_id)] == expected["customer"]
    assert by_object[("appointment", appointment_id)] == expected["appointment"]
    # Divergent, and archived with no purge by the provider (Tekmetric keeps it), are the operator's to delete.
    assert all(o.needs_operator is (o.outcome in ("divergent", "archived")) for o in outcomes)
    assert all(o.provider_purge_after is None for o in outcomes)
    divergent = [o for o in outcomes if o.outcome == "divergent"]
    assert len(audits) == len(divergent) >= 1
    assert all(a.details.get("needs_operator") is True and a.subject_hash == forget.subject_hash for a in audits)
    assert await count_rows(sessions, rows) == 0  # local rows are erased whatever the CRM could do
    state = drivers.state(slug)
    if slug == "mindbody":
        assert state.clients[customer_id]["Email"] == EMAIL  # Mindbody still holds the client: the divergence
    else:
        assert state.customers[int(customer_id)]["email"] == EMAIL
        assert state.appointments[int(appointment_id)]["deletedDate"] is not None
