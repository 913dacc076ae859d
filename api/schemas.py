"""Request and response models of the agent tool routes and the public /v1 API.

These are the wire contract, kept apart from workflow payloads so either can evolve alone. They also feed
`GET /openapi.json`, so every constraint here (lengths, ranges, enums) is what schemathesis probes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from api.ingest_models import CustomerIn, QualificationIn
from api.ingest_models import Fields as LeadFields
from drivers.base import CrmObject

# A CRM field value: scalars only. Every CRM we speak takes strings, numbers and booleans per field;
# nested structures have no portable meaning there.
# A list is a multi-select value (the picklist's values): written as the provider spells it (drivers/mapping.py).
FieldValue = Annotated[str, StringConstraints(max_length=10_000)] | int | Annotated[float, Field(allow_inf_nan=False)] \
    | bool | None | Annotated[list[Annotated[str, StringConstraints(max_length=1_000)]], Field(max_length=100)]
Fields = Annotated[dict[Annotated[str, StringConstraints(min_length=1, max_length=128)], FieldValue],
                   Field(max_length=100)]
Key = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]
ConversationId = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class _Wire(BaseModel):
    # Unknown members are a 422 on every route, as on the agent routes: a typo (or a `tenant_id`, which only the
    # credential decides) is refused, never silently ignored.
    model_config = ConfigDict(frozen=True, extra="forbid")


# ---- agent tool routes --------------------------------------------------------------------------------------


class ToolRequest(_Wire):
    """What every tool call may carry besides its arguments."""

    conversation_id: ConversationId | None = Field(
        default=None, description="The conversation this call belongs to; recorded in the credential audit trail.")


class LookupCustomerRequest(ToolRequest):
    """Who is calling: at least one identifier; phones in any common format."""

    phone: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = None
    email: Annotated[str, StringConstraints(min_length=3, max_length=320)] | None = None
    external_id: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None

    @model_validator(mode="after")
    def _one_identifier(self) -> LookupCustomerRequest:
        if self.phone is None and self.email is None and self.external_id is None:
            raise ValueError("give at least one of phone, email or external_id")
        return self


class SearchRecordsRequest(ToolRequest):
    """Free text within one object."""

    object: CrmObject
    query: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    limit: int = Field(default=10, ge=1, le=50)


class CreateRecordToolRequest(ToolRequest):
    """A new record of one object."""

    object: CrmObject
    fields: Fields = Field(min_length=1, description="Canonical keys (lead.budget_max or budget_max) or the "
                                                    "provider's own field names.")
    idempotency_key: Key | None = Field(
        default=None, description="Retrying with the same key never makes a second record.")


class UpdateRecordRequest(ToolRequest):
    """Only the given fields change."""

    object: CrmObject
    external_id: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    fields: Fields = Field(min_length=1, description="Canonical keys (lead.budget_max or budget_max) or the "
                                                    "provider's own field names; GET /api/tools/schema lists them.")


class ListRecentRequest(ToolRequest):
    """Records changed since a moment."""

    object: CrmObject
    since: datetime | None = Field(default=None, description="Default: 24 hours ago. Needs a time zone.")
    limit: int = Field(default=20, ge=1, le=100)

    @model_validator(mode="after")
    def _aware(self) -> ListRecentRequest:
        if self.since is not None and self.since.tzinfo is None:
            raise ValueError("since needs a time zone (e.g. 2025-01-01T00:00:00Z)")
        return self


class CustomerOut(_Wire):
    """A customer as the CRM holds it; `fields` under the tenant's canonical keys where mapped."""

    external_id: str
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    fields: dict[str, Any] = {}
    url: str | None = None


class RecordOut(_Wire):
    """A record as the CRM holds it; `fields` under the tenant's canonical keys where mapped."""

    object: CrmObject
    external_id: str
    fields: dict[str, Any] = {}
    url: str | None = None
    updated_at: datetime | None = None


class LookupCustomerResponse(_Wire):
    """Found, or explicitly not found (or a ToolFailure when the CRM could not answer)."""

    ok: Literal[True] = True
    found: bool
    customer: CustomerOut | None = None
    # Set when not found because the CRM did not answer within the lookup deadline: greet as an unknown caller.
    reason: Literal["crm_timeout"] | None = None


class RecordsResponse(_Wire):
    """The records the CRM returned (or a ToolFailure when it could not answer)."""

    ok: Literal[True] = True
    count: int
    records: list[RecordOut]


class CreateRecordToolResponse(_Wire):
    """The record; `created` is false when a retry found the one the first call made."""

    ok: Literal[True] = True
    external_id: str
    record_url: str | None = None
    created: bool


class UpdateRecordResponse(_Wire):
    """The updated record, when the CRM returns it."""

    ok: Literal[True] = True
    record: RecordOut | None = None


FailureReason = Literal["crm_unavailable", "crm_auth", "crm_rate_limited", "crm_not_connected", "crm_rejected",
                        "crm_conflict", "not_found", "crm_error"]
Fallback = Literal["offer_follow_up", "retry_later", "confirm_details"]


class ToolFailure(_Wire):
    """The CRM could not answer. Never invented data: the agent gets a reason and what to do instead."""

    ok: Literal[False] = False
    reason: FailureReason
    retry_after: int | None = None
    suggested_fallback: Fallback
    message: str
    fields: list[dict[str, Any]] = Field(
        default_factory=list, description="crm_rejected / invalid_fields: each field named, as "
        "{field, code, message} (code: required | unknown | read_only | invalid from the CRM; unmapped, "
        "picklist… from our mapping, with suggestions); names only, never values.")


# ---- public /v1 API -----------------------------------------------------------------------------------------


class CreateRecordRequest(_Wire):
    """A record to create in the tenant's CRM, exactly once per idempotency key."""

    object: CrmObject
    fields: Fields = Field(min_length=1)
    idempotency_key: Key = Field(description="The same key with the same body replays the first answer; "
                                             "with a different body it is a 422.")


class CreateRecordResponse(_Wire):
    """The CRM's id for the record, and a link to it in the CRM when the provider has one."""

    external_id: str
    record_url: str | None = None


class LeadRequest(_Wire):
    """A lead from the tenant's own system (a web form, a booking page), mirrored to its CRM by the lifecycle."""

    idempotency_key: Key = Field(description="The same key with the same body replays the first answer; "
                                             "with a different body it is a 422.")
    customer: CustomerIn | None = Field(default=None, description="Who the lead is; becomes a CRM contact.")
    source: Annotated[str, StringConstraints(min_length=1, max_length=64)] = "api"
    status: Annotated[str, StringConstraints(min_length=1, max_length=32)] = "new"
    fields: LeadFields = Field(default_factory=dict, description="Canonical keys: budget_max or lead.budget_max.")
    qualification: QualificationIn | None = None


class LeadAccepted(_Wire):
    """Accepted: stored and queued for the CRM; `workflow_id` is the tenant's mirror in the Temporal UI."""

    lead_id: str
    customer_id: str | None = None
    sync_state: str
    workflow_id: str


class ProblemOut(_Wire):
    """RFC 9457 problem details (extension members vary by `type`)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
