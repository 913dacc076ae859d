"""Records the driver verbs return, and the canonical CRM objects. Re-exported by drivers.base."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from drivers.errors import DriverError

__all__ = [
    "ConnectionCheck",
    "CreateResult",
    "CrmObject",
    "CustomerRecord",
    "DeleteResult",
    "FieldInfo",
    "Record",
    "UpsertItem",
    "UpsertOutcome",
]


class CrmObject(StrEnum):
    """Canonical objects; each driver maps them to its provider's objects."""

    CUSTOMER = "customer"  # HubSpot contact, Salesforce Contact
    LEAD = "lead"
    DEAL = "deal"
    CASE = "case"  # HubSpot ticket
    APPOINTMENT = "appointment"
    NOTE = "note"  # transcripts land here, associated with the customer


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class CustomerRecord(_Model):
    external_id: str
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    url: str | None = None


class Record(_Model):
    object: CrmObject
    external_id: str
    fields: dict[str, Any] = Field(default_factory=dict)
    url: str | None = None
    updated_at: datetime | None = None


class CreateResult(_Model):
    external_id: str
    record_url: str | None = None
    created: bool = True  # False when an idempotent retry found the record the first call made


class DeleteResult(_Model):
    """What the provider did: `hard_deleted` (gone for good) or a soft delete (archive, recycle bin) that the
    provider purges by itself after `purge_delay_days`, or never (None: someone must delete it by hand)."""

    deleted: bool
    hard_deleted: bool
    purge_delay_days: int | None = None


class FieldInfo(_Model):
    """One field of a CRM object as the provider describes it.

    `picklist_values`: the allowed values of a picklist/enumeration (active ones), empty otherwise;
    `reference_to`: the objects a lookup field points at (several for polymorphic lookups);
    `custom`: defined by the tenant (or our installer) rather than the provider.
    """

    name: str
    label: str
    type: str
    required: bool = False
    read_only: bool = False
    picklist_values: list[str] = Field(default_factory=list)
    reference_to: list[str] = Field(default_factory=list)
    custom: bool = False


class ConnectionCheck(_Model):
    ok: bool
    reason: str | None = None


@dataclass(frozen=True)
class UpsertItem:
    """One record of a batch write: created under `idempotency_key`, or updated when `external_id` is known.

    An in-process value (it holds customer fields): never a Temporal payload.
    """

    idempotency_key: str
    fields: Mapping[str, Any]
    external_id: str | None = None


@dataclass(frozen=True)
class MatchItem:
    """One customer of a batch match (`BaseDriver.match_customers`): found by `phone` and/or `email`, answered
    under `key`. `known_id` is a hint (the phone index's record for that phone): the driver verifies it still
    carries the phone before answering with it, and saves a search when it does.

    An in-process value (it holds customer content): never a Temporal payload.
    """

    key: str
    phone: str | None = None
    email: str | None = None
    known_id: str | None = None


@dataclass(frozen=True)
class UpsertOutcome:
    """What happened to one item of a batch: its record id and whether it was created, or its error.

    A failed item carries the same taxonomy error a single call would have raised; the other items of the
    batch are unaffected by it.
    """

    external_id: str | None = None
    created: bool = False
    error: DriverError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None
