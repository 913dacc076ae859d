"""Request bodies of the agent ingest routes (what the agent learned during a conversation).

Separate from the workflow models on purpose: the wire API and Temporal history evolve independently.
Unknown keys are refused so a typo in a field name is a 422 instead of silently dropped content.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from drivers.base import normalize_phone
from drivers.text import DEFAULT_REGION

_KEY = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?$")
FieldValue = str | int | float | bool | None


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must carry a time zone offset (e.g. 2026-05-01T14:00:00Z)")
    return value


def _phone(value: str, info: ValidationInfo) -> str:
    e164 = normalize_phone(value, str((info.context or {}).get("region") or DEFAULT_REGION))
    if e164 is None:
        raise ValueError("is not a phone number")
    return e164


def _email(value: str) -> str:
    local, at, domain = value.strip().partition("@")
    if not (local and at and "." in domain):
        raise ValueError("is not an email address")
    return value.strip()


def _fields(value: dict[str, FieldValue]) -> dict[str, FieldValue]:
    bad = [key for key in value if not _KEY.match(key)]
    if bad:
        raise ValueError("keys must be canonical names like budget_max or lead.budget_max")
    return value


Aware = Annotated[datetime, AfterValidator(_aware)]
Phone = Annotated[str, Field(max_length=40), AfterValidator(_phone)]
Email = Annotated[str, Field(max_length=320), AfterValidator(_email)]
Fields = Annotated[dict[str, FieldValue], Field(max_length=100), AfterValidator(_fields)]
Text = Annotated[str, Field(min_length=1, max_length=20_000)]
Short = Annotated[str, Field(min_length=1, max_length=200)]
Token = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CustomerIn(_Body):
    id: uuid.UUID | None = None  # the agent's own id makes a retried POST idempotent
    name: Short | None = None
    phone: Phone | None = None
    email: Email | None = None
    external_id: Annotated[str, Field(max_length=255)] | None = None  # the CRM's id, when a lookup found it
    fields: Fields = Field(default_factory=dict)

    @model_validator(mode="after")
    def _identifiable(self) -> CustomerIn:
        if not (self.name or self.phone or self.email or self.external_id):
            raise ValueError("a customer needs at least a name, phone, email or external_id")
        return self


class CustomerPatch(_Body):
    name: Short | None = None
    phone: Phone | None = None
    email: Email | None = None
    fields: Fields = Field(default_factory=dict)  # merged into what is stored


class MessageIn(_Body):
    turn_id: Token  # unique per conversation: a resent turn is accepted once
    role: Annotated[str, Field(pattern=r"^(agent|customer)$")]
    text: Text
    spoken_at: Aware | None = None


class MessagesIn(_Body):
    messages: Annotated[list[MessageIn], Field(min_length=1, max_length=500)]


class ConversationIn(_Body):
    id: uuid.UUID | None = None
    customer_id: uuid.UUID | None = None
    customer: CustomerIn | None = None  # or create the customer in the same call
    channel: Annotated[str, Field(pattern=r"^(voice|chat)$")] = "voice"
    started_at: Aware | None = None
    messages: Annotated[list[MessageIn], Field(max_length=500)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_customer(self) -> ConversationIn:
        if (self.customer_id is None) == (self.customer is None):
            raise ValueError("give exactly one of customer_id or customer: a transcript is a note on a customer")
        return self


class ConversationPatch(_Body):
    ended_at: Aware | None = None
    summary: Annotated[str, Field(max_length=20_000)] | None = None


class QualificationIn(_Body):
    stage: Annotated[str, Field(min_length=1, max_length=32)] = "new"
    score: Annotated[int, Field(ge=0, le=1000)] | None = None
    answers: Fields = Field(default_factory=dict)


class FromTurn(_Body):
    """Rows the agent creates during a turn. `id` makes a retried POST find the row it made; `turn_id` only says
    which turn produced it (each row has its own CRM object and key, even when several share a turn)."""

    id: uuid.UUID | None = None
    customer_id: uuid.UUID | None = None
    conversation_id: uuid.UUID | None = None
    turn_id: Token | None = None


class LeadIn(FromTurn):
    source: Annotated[str, Field(max_length=64)] | None = None
    status: Annotated[str, Field(min_length=1, max_length=32)] = "new"
    fields: Fields = Field(default_factory=dict)
    qualification: QualificationIn | None = None


class LeadPatch(_Body):
    status: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    fields: Fields = Field(default_factory=dict)
    qualification: QualificationIn | None = None


class AppointmentIn(FromTurn):
    starts_at: Aware
    ends_at: Aware | None = None
    service: Short | None = None
    status: Annotated[str, Field(min_length=1, max_length=32)] = "booked"
    notes: Annotated[str, Field(max_length=20_000)] | None = None

    @model_validator(mode="after")
    def _order(self) -> AppointmentIn:
        if self.ends_at is not None and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class CaseIn(FromTurn):
    subject: Annotated[str, Field(min_length=1, max_length=300)]
    description: Annotated[str, Field(max_length=20_000)] | None = None
    status: Annotated[str, Field(min_length=1, max_length=32)] = "open"
    priority: Annotated[str, Field(max_length=16)] | None = None


def merged(stored: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Fields merge key by key; a None value removes the key."""
    out = {**stored, **patch}
    return {key: value for key, value in out.items() if value is not None}
