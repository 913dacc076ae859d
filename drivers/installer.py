"""The CRM installer: makes sure the custom fields exactly-once create depends on exist in the tenant's CRM.

For each object the driver keys (`keyed_objects`), it reads the CRM's fields (`describe_schema`); a missing
idempotency-key or fingerprint field is created through the provider's metadata API where the driver has one
(`create_field`: HubSpot properties, Salesforce Tooling, Zoho fields), else — or when the CRM refuses (a
missing scope or permission) — it becomes a manual step saying exactly what an admin must create.
A driver without keyed objects needs nothing of ours (its provider's own mechanism dedupes creates).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from drivers.base import BaseDriver, CrmObject
from drivers.errors import DriverError

KEY_LABEL = "CRM-SoR idempotency key"
FINGERPRINT_LABEL = "CRM-SoR request fingerprint"


@dataclass(frozen=True)
class FieldOutcome:
    """One of our fields on one object: `present`, `created`, or `manual` with the admin's instruction."""

    object: str
    field: str
    outcome: Literal["present", "created", "manual"]
    instruction: str | None = None
    reason: str | None = None  # why it is manual: no metadata API, or the CRM's refusal (error type only)


@dataclass(frozen=True)
class InstallReport:
    """`complete` when exactly-once create is possible; `manual_steps` lists what an admin must create."""

    provider: str
    fields: list[FieldOutcome] = field(default_factory=list)

    @property
    def state(self) -> Literal["complete", "manual_steps"]:
        return "manual_steps" if any(f.outcome == "manual" for f in self.fields) else "complete"

    def as_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "state": self.state,
                "fields": [{k: v for k, v in vars(f).items() if v is not None} for f in self.fields]}


def _instruction(driver: BaseDriver, obj: CrmObject, name: str, unique: bool) -> str:
    extra = " marked unique and as an External ID" if unique else ""
    return (f"In {driver.slug}, on the {obj.value} object, create a text field (255 characters) with the API "
            f"name {name}{extra}.")


async def install(driver: BaseDriver) -> InstallReport:
    """Check and create our fields; idempotent (a second run finds them `present`)."""
    outcomes: list[FieldOutcome] = []
    wanted = ((driver.config.get("idempotency_field", driver.idempotency_field), KEY_LABEL, True),
              (driver.config.get("fingerprint_field", driver.fingerprint_field), FINGERPRINT_LABEL, False))
    for obj in sorted(driver.keyed_objects):
        try:
            existing = {f.name for f in await driver.describe_schema(obj)}
        except DriverError as exc:
            outcomes += [FieldOutcome(obj.value, str(name), "manual", _instruction(driver, obj, str(name), unique),
                                      f"cannot read the object's fields: {type(exc).__name__}")
                         for name, _, unique in wanted]
            continue
        for name, label, unique in wanted:
            name = str(name)
            if name in existing:
                outcomes.append(FieldOutcome(obj.value, name, "present"))
                continue
            try:
                made = await driver.create_field(obj, name, label, unique=unique)
            except DriverError as exc:
                outcomes.append(FieldOutcome(obj.value, name, "manual", _instruction(driver, obj, name, unique),
                                             f"the CRM refused to create it: {type(exc).__name__}"))
                continue
            outcomes.append(FieldOutcome(obj.value, name, "created") if made else FieldOutcome(
                obj.value, name, "manual", _instruction(driver, obj, name, unique), "no field-creation API"))
            existing.add(name)
    return InstallReport(driver.slug, outcomes)
