"""Boundary models of the forget workflow: ids, the keyed subject hash and retry knobs, never identifiers."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict


class ForgetInput(BaseModel):
    """Start (or resume) the erasure recorded in `erasure_requests` row `request_id`.

    The retry knobs are input fields because workflows read no settings; the API sets production values.
    """

    model_config = ConfigDict(frozen=True)

    request_id: uuid.UUID
    tenant_id: uuid.UUID
    subject_hash: str
    crm_attempts: int = 5
    crm_initial_retry_seconds: float = 2.0
    crm_max_retry_seconds: float = 120.0


class ForgetResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: str  # completed | needs_attention
    outcomes: dict[str, int]
    local_rows_scrubbed: int
    lifecycles_cancelled: int


def forget_workflow_id(tenant_id: uuid.UUID, subject_hash: str) -> str:
    """One erasure run per (tenant, subject) at a time: a repeated request attaches to the running one."""
    return f"forget:{tenant_id}:{subject_hash}"
