"""What one class-(c) row becomes in the tenant's CRM: object, provider fields, and create-or-update.

The row's canonical record goes through the one mapping engine (drivers/mapping.py, the same the agent's
tool routes use), so one input is one CRM payload on every path. Two kinds of keys:
- *derived* ones we compose from columns that the CRM record also carries elsewhere (a lead's name from its
  customer): skipped when the CRM has no field for them;
- *content* the agent gave us: never dropped. Unmapped lead/qualification details land in the lead's free
  text field (`lead.message`) when it is mapped; anything else unmapped stops the write with
  `UnmappedFieldsError` (an operator maps the field and redrives), instead of silently losing data.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from drivers import mapping as engine
from drivers.base import BaseDriver, CrmObject
from drivers.mapping import FieldValueError, TenantMapping, UnmappedFieldsError
from drivers.registry import get_driver_class
from store.field_mapping import load_mapping
from store.models import Appointment, Case, Customer, Lead, QualificationState

__all__ = ["FieldValueError", "TenantMapping", "UnmappedFieldsError"]

OVERFLOW = engine.OVERFLOW[CrmObject.LEAD.value]


class DependencyPendingError(Exception):
    """The row hangs off a row whose CRM record does not exist yet (a lead's customer); retry later."""

    def __init__(self, table: str) -> None:
        super().__init__(f"waiting for a {table} row to be mirrored first")
        self.table = table


@dataclass(frozen=True)
class WritePlan:
    """One CRM write. `note_text` set: the row is mirrored as a note on `customer_external_id`."""

    object: CrmObject
    fields: dict[str, Any] = field(default_factory=dict)
    existing_id: str | None = None
    lookup: dict[str, str] = field(default_factory=dict)  # customers: find the CRM's own record first
    note_text: str | None = None
    customer_external_id: str | None = None


@dataclass
class Related:
    """The rows a row's CRM write needs (loaded by the activity, ids resolved here)."""

    customer: Customer | None = None
    lead: Lead | None = None
    qualification: QualificationState | None = None


async def write_map(session: AsyncSession, tenant_id: uuid.UUID, driver: BaseDriver | type[BaseDriver]
                    ) -> TenantMapping:
    """The tenant's mapping (drivers/mapping.py) as the mirror writes with it."""
    return await load_mapping(session, tenant_id, driver)


def canonical(prefix: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Short keys (`budget_max`) get the object's prefix; full keys pass as given."""
    return {engine.full_key(prefix, key): value for key, value in fields.items()}


def split_name(name: str | None) -> tuple[str | None, str | None]:
    if not name or not name.strip():
        return None, None
    first, _, last = name.strip().rpartition(" ")
    return (first or None, last) if first else (None, last)


def qualification_line(qualification: QualificationState | None) -> list[str]:
    """The first line of a lead's free-text details when a qualification state is written with it."""
    if qualification is None:
        return []
    score = f", score {qualification.score}" if qualification.score is not None else ""
    return [f"Qualification: {qualification.stage}{score}"]


def plan_customer(row: Customer, mapping: TenantMapping) -> WritePlan:
    first, last = split_name(row.name)
    derived = {"customer.first_name": first, "customer.last_name": last, "customer.email": row.email,
               "customer.phone": row.phone}
    fields = engine.to_provider(mapping, CrmObject.CUSTOMER, row.fields or {}, derived=derived)
    lookup = {k: v for k, v in (("phone", row.phone), ("email", row.email)) if v}
    return WritePlan(CrmObject.CUSTOMER, fields, existing_id=row.crm_external_id, lookup=lookup)


def _lead_fields(lead: Lead, related: Related, mapping: TenantMapping, slug: str) -> dict[str, Any]:
    customer, qualification = related.customer, related.qualification
    first, last = split_name(customer.name if customer else None)
    derived: dict[str, Any] = {"lead.first_name": first, "lead.last_name": last, "lead.source": lead.source,
                               "lead.email": customer.email if customer else None,
                               "lead.phone": customer.phone if customer else None}
    if lead.status != "new":
        derived["lead.status"] = lead.status
    if get_driver_class(slug).leads_are_contacts:
        derived["lead.stage"] = "lead"
    content = canonical("lead", lead.fields or {})
    if qualification is not None:
        content |= canonical("lead", qualification.answers or {})
    return engine.to_provider(mapping, CrmObject.LEAD, content, derived=derived,
                              preamble=qualification_line(qualification))


def plan_lead(row: Lead, related: Related, mapping: TenantMapping, slug: str) -> WritePlan:
    customer = related.customer
    if customer is not None and customer.crm_external_id is None:
        raise DependencyPendingError("customers")
    fields = _lead_fields(row, related, mapping, slug)
    existing = row.crm_external_id
    if existing is None and customer is not None and get_driver_class(slug).leads_are_contacts:
        existing = customer.crm_external_id
    return WritePlan(CrmObject.LEAD, fields, existing_id=existing)


def plan_qualification(row: QualificationState, related: Related, mapping: TenantMapping, slug: str
                       ) -> WritePlan:
    lead = related.lead
    if lead is None or lead.crm_external_id is None:
        raise DependencyPendingError("leads")
    fields = _lead_fields(lead, Related(customer=related.customer, qualification=row), mapping, slug)
    return WritePlan(CrmObject.LEAD, fields, existing_id=lead.crm_external_id)


def plan_case(row: Case, mapping: TenantMapping) -> WritePlan:
    content = {"case.subject": row.subject, "case.description": row.description, "case.status": row.status,
               "case.priority": row.priority}
    fields = engine.to_provider(mapping, CrmObject.CASE, {k: v for k, v in content.items() if v is not None})
    return WritePlan(CrmObject.CASE, fields, existing_id=row.crm_external_id)


def appointment_text(row: Appointment) -> str:
    lines = [f"Appointment ({row.status}): {row.service or 'unspecified service'}",
             f"Starts: {row.starts_at.isoformat()}"]
    if row.ends_at is not None:
        lines.append(f"Ends: {row.ends_at.isoformat()}")
    if row.notes:
        lines.append(f"Notes: {row.notes}")
    return "\n".join(lines)


def plan_appointment(row: Appointment, related: Related, mapping: TenantMapping,
                     supported: frozenset[CrmObject]) -> WritePlan:
    if CrmObject.APPOINTMENT in supported:
        minutes = int((row.ends_at - row.starts_at).total_seconds() // 60) if row.ends_at else None
        content = {"appointment.subject": row.service or "Appointment", "appointment.start": row.starts_at,
                   "appointment.duration_minutes": minutes, "appointment.description": row.notes}
        fields = engine.to_provider(mapping, CrmObject.APPOINTMENT,
                                    {k: v for k, v in content.items() if v is not None})
        return WritePlan(CrmObject.APPOINTMENT, fields, existing_id=row.crm_external_id)
    # No appointment object (HubSpot): the booking becomes a note on the customer, updates appended to it.
    customer = related.customer
    if customer is None:
        raise UnmappedFieldsError(["appointment.customer"])
    if customer.crm_external_id is None:
        raise DependencyPendingError("customers")
    return WritePlan(CrmObject.NOTE, existing_id=row.crm_external_id, note_text=appointment_text(row),
                     customer_external_id=customer.crm_external_id)
