"""Records the driver verbs return, and the canonical CRM objects. Re-exported by drivers.base."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ConnectionCheck",
    "CreateResult",
    "CrmObject",
    "CustomerRecord",
    "DeleteResult",
    "FieldInfo",
    "Record",
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
    deleted: bool
    hard_deleted: bool


class FieldInfo(_Model):
    name: str
    label: str
    type: str
    required: bool = False
    read_only: bool = False


class ConnectionCheck(_Model):
    ok: bool
    reason: str | None = None
