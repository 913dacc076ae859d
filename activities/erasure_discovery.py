"""Finding a subject's records in the tenant's CRM, and mapping our tables to CRM objects.

Deleting the wrong person's record is worse than missing one, so only three kinds of record qualify:
ids our own mirror recorded on the subject's rows, customers the driver's `lookup_customer` returns for
one of the identifiers, and search hits on related objects whose fields carry the subject's email or
phone *exactly* (a free-text search hit alone proves nothing).
"""

from __future__ import annotations

from drivers.base import BaseDriver, CrmObject, Record, normalize_phone
from store.erasure import Subject

# Where the lifecycle mirrors each class-(c) table. Messages live inside their conversation's transcript
# note and qualification state inside its lead, so neither has a CRM record of its own.
OBJECT_OF_TABLE: dict[str, CrmObject] = {
    "customers": CrmObject.CUSTOMER,
    "leads": CrmObject.LEAD,
    "appointments": CrmObject.APPOINTMENT,
    "cases": CrmObject.CASE,
    "conversations": CrmObject.NOTE,
}

SEARCH_LIMIT = 50
Target = tuple[str, str, str]  # (object, external_id, source)


async def lookup_customers(driver: BaseDriver, subject: Subject) -> list[Target]:
    """One lookup per identifier: the phone and the email may belong to two different CRM contacts."""
    found: list[Target] = []
    for kwargs in ({"phone": subject.phone}, {"email": subject.email}, {"external_id": subject.external_id}):
        if next(iter(kwargs.values())) is None:
            continue
        customer = await driver.lookup_customer(**kwargs)
        if customer is not None:
            found.append((CrmObject.CUSTOMER.value, customer.external_id, "lookup"))
    return found


async def search_related(driver: BaseDriver, subject: Subject) -> list[Target]:
    """Records of the other supported objects whose fields hold the subject's email or phone exactly."""
    queries = [q for q in (subject.email, subject.phone) if q]
    found: list[Target] = []
    for obj in sorted(driver.supported_objects - {CrmObject.CUSTOMER}):
        for query in queries:
            for record in await driver.search_records(obj, query, limit=SEARCH_LIMIT):
                if carries_identifier(record, subject, driver.default_region):
                    found.append((obj.value, record.external_id, "search"))
    return found


def carries_identifier(record: Record, subject: Subject, region: str) -> bool:
    for value in record.fields.values():
        if not isinstance(value, str) or not value.strip():
            continue
        if subject.email and value.strip().lower() == subject.email:
            return True
        if subject.phone and any(ch.isdigit() for ch in value) and normalize_phone(value, region) == subject.phone:
            return True
    return False


def crm_object_for(obj: CrmObject, supported: frozenset[CrmObject]) -> CrmObject:
    """The object a recorded id really lives in: without an appointment object, the lifecycle mirrors an
    appointment as a note on the customer (activities/crm_plan.plan_appointment)."""
    if obj is CrmObject.APPOINTMENT and obj not in supported:
        return CrmObject.NOTE
    return obj


def dedupe(targets: list[Target]) -> list[Target]:
    """One target per record. A lead recorded with a customer's id is that customer's record (HubSpot's lead
    is the person's contact in a lifecycle stage): deleting it twice would report a false not_found."""
    customers = {external_id for obj, external_id, _ in targets if obj == CrmObject.CUSTOMER.value}
    seen: set[tuple[str, str]] = set()
    unique = []
    for obj, external_id, source in targets:
        if obj == CrmObject.LEAD.value and external_id in customers:
            continue
        if (obj, external_id) not in seen:
            seen.add((obj, external_id))
            unique.append((obj, external_id, source))
    return unique
