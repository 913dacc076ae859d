"""Activity boundary models of CRM-triggered outbound calls and CRM polling. Ids, states and times only."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class MatchTriggerInput(_Model):
    tenant_id: uuid.UUID
    event_row_id: uuid.UUID
    now: datetime  # the workflow's clock: deadlines and caps follow workflow time (time-skipping tests)


class MatchTriggerResult(_Model):
    call_request_id: uuid.UUID | None = None
    reason: str  # matched | no_trigger | not_a_record | record_gone


class GateInput(_Model):
    tenant_id: uuid.UUID
    call_request_id: uuid.UUID
    now: datetime


class GateResult(_Model):
    action: str  # place | defer | block
    reason: str
    until: datetime | None = None


class PollInput(_Model):
    tenant_id: uuid.UUID
    object: str
    now: datetime
    limit: int = 100


class PollResult(_Model):
    new_event_row_ids: list[uuid.UUID]
