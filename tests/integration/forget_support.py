"""Shared pieces of the forget tests: a DriverProvider over the in-process HubSpot sandbox, a subject with
rows in every class-(c) table and records in the sandbox CRM, and a worker running the real activities.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker

import worker as composition
from activities.erasure import ErasureActivities
from drivers.auth import BearerAuth
from drivers.base import BaseDriver, CrmObject, DeleteResult
from drivers.errors import DeleteUnsupportedError
from drivers.hubspot import HubSpotDriver
from sandboxes import hubspot as hubspot_sandbox
from settings import Settings
from store import erasure_requests as requests
from store.erasure import Subject, subject_hash
from store.models import (
    Appointment,
    Case,
    Conversation,
    Customer,
    ErasureRequest,
    Lead,
    Message,
    QualificationState,
    Tenant,
)
from vault.connections import Actor
from workflows.forget import ForgetWorkflow
from workflows.forget_types import ForgetInput, forget_workflow_id

PHONE, EMAIL, NAME = "+14155550123", "dana.erase@example.com", "Dana Erasemé"


class NoDeleteHubSpotDriver(HubSpotDriver):
    """A real HubSpot driver whose provider account cannot delete tickets (as some plans and providers)."""

    slug = "hubspot_nodelete"

    async def delete_record(self, object: CrmObject, external_id: str, *, hard: bool = False) -> DeleteResult:
        if object is CrmObject.CASE:
            raise DeleteUnsupportedError("tickets cannot be deleted on this account", provider=self.slug)
        return await super().delete_record(object, external_id, hard=hard)


def pausing_driver(entered: asyncio.Event, release: asyncio.Event, pause_on_call: int) -> type[HubSpotDriver]:
    """The real HubSpot driver, except that its `pause_on_call`-th delete waits for the test to release it."""

    class PausingHubSpotDriver(HubSpotDriver):
        calls = 0

        async def delete_record(self, object: CrmObject, external_id: str, *, hard: bool = False) -> DeleteResult:
            type(self).calls += 1
            if type(self).calls == pause_on_call:
                entered.set()
                await release.wait()
            return await super().delete_record(object, external_id, hard=hard)

    return PausingHubSpotDriver


def _hubspot() -> Any:
    """A HubSpot sandbox whose search sees writes at once and never throttles: these tests are about erasure."""
    app = hubspot_sandbox.create_app()
    app.state.sandbox.instant_search()
    return app


@dataclass
class SandboxDrivers:
    """DriverProvider over an in-process HubSpot sandbox; each tenant maps to a driver class (and, with
    `per_tenant`, to a CRM of its own)."""

    app: Any = field(default_factory=lambda: _hubspot())
    classes: dict[uuid.UUID, type[BaseDriver]] = field(default_factory=dict)
    per_tenant: bool = False
    apps: dict[uuid.UUID, Any] = field(default_factory=dict)
    opened: list[Actor] = field(default_factory=list)
    base_url: ClassVar[str] = "https://api.hubapi.com"

    @property
    def state(self) -> hubspot_sandbox.HubSpotState:
        state: hubspot_sandbox.HubSpotState = self.app.state.sandbox
        return state

    def connect(self, tenant_id: uuid.UUID, driver_class: type[BaseDriver]) -> hubspot_sandbox.HubSpotState:
        self.classes[tenant_id] = driver_class
        if not self.per_tenant:
            return self.state
        app = self.apps[tenant_id] = _hubspot()
        state: hubspot_sandbox.HubSpotState = app.state.sandbox
        return state

    def open(self, tenant_id: uuid.UUID, actor: Actor) -> AbstractAsyncContextManager[BaseDriver]:
        return self._open(tenant_id, actor)

    @asynccontextmanager
    async def _open(self, tenant_id: uuid.UUID, actor: Actor) -> AsyncIterator[BaseDriver]:
        cls = self.classes.get(tenant_id)
        if cls is None:
            raise LookupError("unknown tenant")
        self.opened.append(actor)
        app = self.apps.get(tenant_id, self.app)
        state: hubspot_sandbox.HubSpotState = app.state.sandbox
        async with httpx.AsyncClient(base_url=self.base_url, transport=httpx.ASGITransport(app=app),
                                     auth=BearerAuth(state.tokens.issue_access())) as client:
            yield cls(client, {"portal_id": state.portal_id})

    def live(self, object_type: str, record_id: str) -> bool:
        record = self.state.records.get(object_type, {}).get(record_id)
        return record is not None and not record.archived

    def exists(self, object_type: str, record_id: str) -> bool:
        return record_id in self.state.records.get(object_type, {})


@dataclass
class Seeded:
    tenant_id: uuid.UUID
    customer_id: uuid.UUID
    crm: dict[str, tuple[str, str]]  # role -> (sandbox object type, record id)
    rows: dict[str, list[uuid.UUID]]  # table -> row ids of the subject
    other_customer_id: uuid.UUID
    other_crm_id: str


async def seed_subject(sessions: async_sessionmaker[AsyncSession], drivers: SandboxDrivers,
                       driver_class: type[BaseDriver] = HubSpotDriver) -> Seeded:
    """A tenant with the subject in every class-(c) table (synced and unsynced) and in the CRM, plus an
    unrelated customer whose rows and records must survive."""
    tenant_id = uuid.uuid4()
    st = drivers.connect(tenant_id, driver_class)
    contact = st.add("contacts", {"firstname": "Dana", "lastname": "Erase", "email": EMAIL, "phone": PHONE})
    # Entered by hand at the tenant (no local row): found by searching leads for the subject's phone.
    lead = st.add("contacts", {"firstname": "D.", "lifecyclestage": "lead", "mobilephone": PHONE})
    note = st.add("notes", {"hs_note_body": f"Caller {NAME} asked about a viewing", "hs_timestamp": "2026-01-01"})
    booking = st.add("notes", {"hs_note_body": "Appointment (booked): viewing", "hs_timestamp": "2026-01-02"})
    ticket = st.add("tickets", {"subject": "Leaky tap", "content": f"{NAME} reports a leak", "hs_pipeline_stage": "1"})
    other = st.add("contacts", {"firstname": "Omar", "lastname": "Keep", "email": "omar.keep@example.com"})
    now = datetime.now(UTC)
    synced = {"sync_state": "synced", "synced_at": now}
    async with sessions() as session, session.begin():
        session.add(Tenant(id=tenant_id, name="Erasure Realty", provider=driver_class.slug, status="active"))
        customer = Customer(tenant_id=tenant_id, name=NAME, phone=PHONE, email=EMAIL.upper(),
                            crm_external_id=contact.id, **synced)
        other_customer = Customer(tenant_id=tenant_id, name="Omar Keep", phone="+14155550999",
                                  email="omar.keep@example.com", crm_external_id=other.id, **synced)
        session.add_all([customer, other_customer])
        await session.flush()
        conversation = Conversation(tenant_id=tenant_id, customer_id=customer.id, summary=f"{NAME} called",
                                    crm_external_id=note.id, **synced)
        other_conversation = Conversation(tenant_id=tenant_id, customer_id=other_customer.id, summary="kept")
        session.add_all([conversation, other_conversation])
        await session.flush()
        messages = [Message(tenant_id=tenant_id, conversation_id=conversation.id, turn_id=str(n), role="customer",
                            text=f"My number is {PHONE}") for n in range(2)]
        # HubSpot's lead of a known customer is that customer's contact (activities/crm_plan.plan_lead).
        lead_row = Lead(tenant_id=tenant_id, customer_id=customer.id, conversation_id=conversation.id,
                        crm_external_id=contact.id, fields={"lead.budget_max": 500000}, **synced)
        session.add_all([*messages, lead_row,
                         Message(tenant_id=tenant_id, conversation_id=other_conversation.id, turn_id="0",
                                 role="customer", text="keep me")])
        await session.flush()
        state = QualificationState(tenant_id=tenant_id, lead_id=lead_row.id, stage="qualified")
        # Without an appointment object the booking is a note on the customer (crm_plan.plan_appointment).
        appointment = Appointment(tenant_id=tenant_id, customer_id=customer.id, starts_at=now, service="viewing",
                                  crm_external_id=booking.id, **synced)
        case = Case(tenant_id=tenant_id, customer_id=customer.id, subject="Leaky tap", crm_external_id=ticket.id,
                    **synced)
        session.add_all([state, appointment, case])
        await session.flush()
        rows = {"customers": [customer.id], "conversations": [conversation.id], "messages": [m.id for m in messages],
                "leads": [lead_row.id], "qualification_states": [state.id], "appointments": [appointment.id],
                "cases": [case.id]}
    crm = {"contact": ("contacts", contact.id), "lead": ("contacts", lead.id), "note": ("notes", note.id),
           "booking": ("notes", booking.id), "ticket": ("tickets", ticket.id)}
    return Seeded(tenant_id, customer.id, crm, rows, other_customer.id, other.id)


async def create_request(sessions: async_sessionmaker[AsyncSession], settings: Settings, tenant_id: uuid.UUID,
                         subject: Subject) -> ForgetInput:
    """What POST /api/tenant/forget records before it starts the workflow."""
    key = settings.subject_hash_key.get_secret_value()
    hashed = subject_hash(key.encode(), tenant_id, subject)
    request_id = uuid.uuid4()
    async with sessions() as session, session.begin():
        session.add(ErasureRequest(id=request_id, tenant_id=tenant_id, subject_hash=hashed, requested_by="test",
                                   status=requests.RUNNING, workflow_id=forget_workflow_id(tenant_id, hashed),
                                   sealed_identifiers=requests.seal_subject(requests.sealing_key(key), tenant_id,
                                                                            request_id, subject)))
    return ForgetInput(request_id=request_id, tenant_id=tenant_id, subject_hash=hashed, crm_attempts=2,
                       crm_initial_retry_seconds=0.1, crm_max_retry_seconds=0.2)


async def prepare_forget(sessions: async_sessionmaker[AsyncSession], settings: Settings,
                         driver_class: type[BaseDriver] = HubSpotDriver,
                         subject: Callable[[Seeded], Subject] | None = None,
                         ) -> tuple[SandboxDrivers, Seeded, ForgetInput]:
    """A fresh sandbox CRM, a seeded subject and its recorded erasure request (by phone and email unless
    `subject` picks other identifiers from the seed)."""
    drivers = SandboxDrivers()
    seeded = await seed_subject(sessions, drivers, driver_class)
    chosen = subject(seeded) if subject is not None else Subject(phone=PHONE, email=EMAIL)
    return drivers, seeded, await create_request(sessions, settings, seeded.tenant_id, chosen)


def forget_worker(client: Client, settings: Settings, sessions: async_sessionmaker[AsyncSession],
                  drivers: SandboxDrivers, task_queue: str) -> Worker:
    acts = ErasureActivities(sessions, drivers, settings.subject_hash_key.get_secret_value())
    return composition.build_worker(client, settings, workflows=[ForgetWorkflow], activities=acts.all(),
                                    task_queue=task_queue)


async def count_rows(sessions: async_sessionmaker[AsyncSession], rows: dict[str, list[uuid.UUID]]) -> int:
    models: dict[str, Any] = {"customers": Customer, "conversations": Conversation, "messages": Message,
                              "leads": Lead, "qualification_states": QualificationState,
                              "appointments": Appointment, "cases": Case}
    total = 0
    async with sessions() as session:
        for table, ids in rows.items():
            model = models[table]
            total += int((await session.execute(select(func.count()).where(model.id.in_(ids)))).scalar_one())
    return total
