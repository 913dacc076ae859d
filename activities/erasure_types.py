"""Payloads of the erasure activities: our ids, counts and states only, never identifiers or CRM ids.

CRM targets travel as the ids of their `erasure_outcomes` rows: a CRM record id may be one of the subject's
identifiers (the operator can erase by external id), and Temporal keeps history beyond our control.
"""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict


class _Payload(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErasureStepInput(_Payload):
    request_id: uuid.UUID
    tenant_id: uuid.UUID


class HoldResult(_Payload):
    rows_held: int
    crm_targets: int
    lifecycle_workflow_ids: list[str]


class StopLifecyclesInput(_Payload):
    request_id: uuid.UUID
    workflow_ids: list[str]


class StopLifecyclesResult(_Payload):
    cancelled: int
    not_running: int


class DiscoverResult(_Payload):
    new_targets: int


class TargetsInput(_Payload):
    request_id: uuid.UUID
    include_failed: bool


class TargetsResult(_Payload):
    outcome_ids: list[uuid.UUID]


class DeleteTargetInput(_Payload):
    request_id: uuid.UUID
    tenant_id: uuid.UUID
    outcome_id: uuid.UUID


class DeleteTargetResult(_Payload):
    outcome: str  # deleted | archived | not_found | divergent | failed


class RecordFailureInput(_Payload):
    request_id: uuid.UUID
    outcome_id: uuid.UUID | None  # None: the failure is the request's CRM lookup, not one record
    step: str
    error: str  # an error code such as unavailable or rate_limited, never a message


class ScrubResult(_Payload):
    rows_deleted: int


class FinishResult(_Payload):
    status: str
    outcomes: dict[str, int]
    local_rows_scrubbed: int
