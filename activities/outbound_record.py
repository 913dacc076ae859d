"""What a trigger needs from the CRM record behind an event: its phone, time zone and condition fields.

The record is read from the tenant's CRM (the system of record) inside the activity and never leaves it:
only the keyed hash of the phone, the time zone names and the yes/no of each condition are kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from drivers.base import BaseDriver, CrmObject
from drivers.errors import NotFoundError
from drivers.text import normalize_phone
from store.outbound_rules import CONDITION_OPS as CONDITION_OPS


@dataclass(frozen=True)
class RecordFacts:
    e164: str | None
    zone: str | None
    fields: Mapping[str, Any] = field(default_factory=dict)


async def read_record(driver: BaseDriver, object: str, external_id: str) -> RecordFacts:
    """Phone, zone and fields of the record (NotFoundError when it is gone)."""
    crm_object = CrmObject(object)
    if crm_object is CrmObject.CUSTOMER or (crm_object is CrmObject.LEAD and driver.leads_are_contacts):
        customer = await driver.lookup_customer(external_id=external_id)
        if customer is None:
            raise NotFoundError("record not found", provider=driver.slug)
        fields: Mapping[str, Any] = customer.fields
        phone = customer.phone
    else:
        record = await driver.get_record(crm_object, external_id)
        fields = record.fields
        phone = driver.phone_of(crm_object, fields)  # the provider's own field names: the driver knows them
    e164 = normalize_phone(phone, driver.default_region) if phone else None
    return RecordFacts(e164=e164, zone=driver.time_zone_of(fields), fields=fields)


def conditions_hold(conditions: Sequence[Mapping[str, Any]], fields: Mapping[str, Any],
                    changed: Sequence[str], mapping: Mapping[str, str]) -> bool:
    """Every condition holds; a field may be a canonical key mapped (kind `trigger`) to a provider field."""
    for condition in conditions:
        name = mapping.get(condition["field"], condition["field"])
        value, op = fields.get(name), condition["op"]
        if op == "exists":
            ok = value not in (None, "")
        elif op == "changed":
            ok = name in changed
        elif op == "in":
            ok = str(value) in {str(v) for v in condition["value"]}
        elif op == "eq":
            ok = str(value) == str(condition["value"])
        else:
            ok = str(value) != str(condition["value"])
        if not ok:
            return False
    return True
