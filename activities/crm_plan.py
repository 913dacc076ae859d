"""What one class-(c) row becomes in the tenant's CRM: object, provider fields, and create-or-update.

Canonical keys (`customer.phone`, `lead.budget_max`) are translated with the driver's default catalog,
overridden by the tenant's `write` mappings. Two kinds of keys:
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
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from drivers.base import CrmObject
from drivers.registry import get_driver_class
from store.field_mapping import field_mappings
from store.models import Appointment, Case, Customer, Lead, QualificationState

OVERFLOW = "lead.message"


class DependencyPendingError(Exception):
    """The row hangs off a row whose CRM record does not exist yet (a lead's customer); retry later."""

    def __init__(self, table: str) -> None:
        super().__init__(f"waiting for a {table} row to be mirrored first")
        self.table = table


class UnmappedFieldsError(Exception):
    """Content keys with no CRM field for this tenant (names only, never values)."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__("no CRM field mapped for: " + ", ".join(sorted(keys)))
        self.keys = sorted(keys)


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


async def write_map(session: AsyncSession, tenant_id: uuid.UUID, catalog: Mapping[str, str]) -> dict[str, str]:
    return (await field_mappings(session, tenant_id, catalog))["write"]


def canonical(prefix: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Short keys (`budget_max`) get the object's prefix; full keys pass as given."""
    return {key if "." in key else f"{prefix}.{key}": value for key, value in fields.items()}


def _value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def translate(mapping: Mapping[str, str], derived: Mapping[str, Any], content: Mapping[str, Any]
              ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(provider fields, unmapped content); derived keys without a field are dropped."""
    out = {mapping[k]: _value(v) for k, v in derived.items() if k in mapping and v is not None}
    unmapped: dict[str, Any] = {}
    for key, value in content.items():
        if key in mapping:
            out[mapping[key]] = _value(value)
        else:
            unmapped[key] = value
    return out, unmapped


def split_name(name: str | None) -> tuple[str | None, str | None]:
    if not name or not name.strip():
        return None, None
    first, _, last = name.strip().rpartition(" ")
    return (first or None, last) if first else (None, last)


def lead_details(lead: Lead | None, qualification: QualificationState | None, unmapped: Mapping[str, Any]) -> str:
    """The lead's free-text details: one deterministic text from both rows, whichever of them is written."""
    lines = []
    if qualification is not None:
        score = f", score {qualification.score}" if qualification.score is not None else ""
        lines.append(f"Qualification: {qualification.stage}{score}")
    lines += [f"{key.partition('.')[2] or key}: {value}" for key, value in sorted(unmapped.items())]
    return "\n".join(lines)


def plan_customer(row: Customer, mapping: Mapping[str, str]) -> WritePlan:
    first, last = split_name(row.name)
    derived = {"customer.first_name": first, "customer.last_name": last, "customer.email": row.email,
               "customer.phone": row.phone}
    fields, unmapped = translate(mapping, derived, canonical("customer", row.fields or {}))
    if unmapped:
        raise UnmappedFieldsError(list(unmapped))
    lookup = {k: v for k, v in (("phone", row.phone), ("email", row.email)) if v}
    return WritePlan(CrmObject.CUSTOMER, fields, existing_id=row.crm_external_id, lookup=lookup)


def _lead_fields(lead: Lead, related: Related, mapping: Mapping[str, str], slug: str) -> dict[str, Any]:
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
    fields, unmapped = translate(mapping, derived, content)
    details = lead_details(lead, qualification, unmapped)
    if details and OVERFLOW not in mapping:
        raise UnmappedFieldsError([*unmapped, OVERFLOW] if unmapped else [OVERFLOW])
    if details:
        fields[mapping[OVERFLOW]] = details
    return fields


def plan_lead(row: Lead, related: Related, mapping: Mapping[str, str], slug: str) -> WritePlan:
    customer = related.customer
    if customer is not None and customer.crm_external_id is None:
        raise DependencyPendingError("customers")
    fields = _lead_fields(row, related, mapping, slug)
    existing = row.crm_external_id
    if existing is None and customer is not None and get_driver_class(slug).leads_are_contacts:
        existing = customer.crm_external_id
    return WritePlan(CrmObject.LEAD, fields, existing_id=existing)


def plan_qualification(row: QualificationState, related: Related, mapping: Mapping[str, str], slug: str
                       ) -> WritePlan:
    lead = related.lead
    if lead is None or lead.crm_external_id is None:
        raise DependencyPendingError("leads")
    fields = _lead_fields(lead, Related(customer=related.customer, qualification=row), mapping, slug)
    return WritePlan(CrmObject.LEAD, fields, existing_id=lead.crm_external_id)


def plan_case(row: Case, mapping: Mapping[str, str]) -> WritePlan:
    content = {"case.subject": row.subject, "case.description": row.description, "case.status": row.status,
               "case.priority": row.priority}
    fields, unmapped = translate(mapping, {}, {k: v for k, v in content.items() if v is not None})
    if unmapped:
        raise UnmappedFieldsError(list(unmapped))
    return WritePlan(CrmObject.CASE, fields, existing_id=row.crm_external_id)


def appointment_text(row: Appointment) -> str:
    lines = [f"Appointment ({row.status}): {row.service or 'unspecified service'}",
             f"Starts: {row.starts_at.isoformat()}"]
    if row.ends_at is not None:
        lines.append(f"Ends: {row.ends_at.isoformat()}")
    if row.notes:
        lines.append(f"Notes: {row.notes}")
    return "\n".join(lines)


def plan_appointment(row: Appointment, related: Related, mapping: Mapping[str, str],
                     supported: frozenset[CrmObject]) -> WritePlan:
    if CrmObject.APPOINTMENT in supported:
        minutes = int((row.ends_at - row.starts_at).total_seconds() // 60) if row.ends_at else None
        content = {"appointment.subject": row.service or "Appointment", "appointment.start": row.starts_at,
                   "appointment.duration_minutes": minutes, "appointment.description": row.notes}
        fields, unmapped = translate(mapping, {}, {k: v for k, v in content.items() if v is not None})
        if unmapped:
            raise UnmappedFieldsError(list(unmapped))
        return WritePlan(CrmObject.APPOINTMENT, fields, existing_id=row.crm_external_id)
    # No appointment object (HubSpot): the booking becomes a note on the customer, updates appended to it.
    customer = related.customer
    if customer is None:
        raise UnmappedFieldsError(["appointment.customer"])
    if customer.crm_external_id is None:
        raise DependencyPendingError("customers")
    return WritePlan(CrmObject.NOTE, existing_id=row.crm_external_id, note_text=appointment_text(row),
                     customer_external_id=customer.crm_external_id)
