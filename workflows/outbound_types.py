"""Workflow boundary models of CRM-triggered outbound calls and CRM polling (ids only: Temporal history)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class OutboundCallInput(_Model):
    tenant_id: uuid.UUID
    event_row_id: uuid.UUID


class OutboundCallResult(_Model):
    outcome: str  # placed | blocked | no_trigger
    reason: str
    call_request_id: uuid.UUID | None = None


class CrmPollInput(_Model):
    tenant_id: uuid.UUID
    objects: list[str]
    task_queue: str
    limit: int = 100


class CrmPollResult(_Model):
    new_events: int


def outbound_call_workflow_id(tenant_id: uuid.UUID, event_row_id: uuid.UUID) -> str:
    """One workflow per inbound event, ever: a redelivered or redispatched event cannot start a second."""
    return f"outbound-call:{tenant_id}:{event_row_id}"


def poll_schedule_id(tenant_id: uuid.UUID) -> str:
    return f"crm-poll:{tenant_id}"


ACTIVITY_TIMEOUT = timedelta(seconds=60)
