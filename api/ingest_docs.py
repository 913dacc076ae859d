"""OpenAPI descriptions of the agent ingest routes (api/routes/ingest.py), attached by path and method.

They live here, not as `@document` on the handlers, only because the ingest module is being rewritten
in parallel; the rewrite should move each entry onto its handler and delete this module. Described, the
routes get their request bodies and answers in `/openapi.json`, so the schemathesis run sends them real
bodies with an agent token instead of stopping at "no body".
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict
from starlette.routing import BaseRoute, Route

from api.ingest_models import (
    AppointmentIn,
    CaseIn,
    ConversationIn,
    ConversationPatch,
    CustomerIn,
    CustomerPatch,
    LeadIn,
    LeadPatch,
    MessagesIn,
)
from api.openapi import document


class IngestAccepted(BaseModel):
    """The row is stored with its mirror intent; `workflow_id` is the tenant's mirror that will write it."""

    model_config = ConfigDict(extra="allow")  # conversations add customer_id and a message count

    id: str
    table: str
    sync_state: str
    workflow_id: str


class MessagesAccepted(BaseModel):
    """Messages stored for the conversation's transcript; a resent turn counts as a duplicate."""

    conversation_id: str
    accepted: int
    duplicates: int
    message_ids: list[str]
    workflow_id: str


class RecordState(BaseModel):
    """Where a row stands: states and ids only. `sync_state`: pending | retrying | blocked | synced."""

    id: str
    table: str
    sync_state: str
    crm_external_id: str | None
    sync_attempts: int
    last_sync_error: str | None
    created_at: str | None
    synced_at: str | None
    purge_after: str | None
    retry_at: str | None = None  # when the mirror tries an unsynced row again (None: as soon as it can)
    workflow_id: str | None = None  # the tenant's mirror


Answers = dict[int, type[BaseModel]]
_CREATED: Answers = {201: IngestAccepted, 200: IngestAccepted}
# 202: the change is queued for the CRM; 200 with `changed: false`: nothing differed, nothing was written.
_UPDATED: Answers = {202: IngestAccepted, 200: IngestAccepted}
_MISSING = {404: "No such row for this tenant", 409: "The tenant is not active"}
DOCS: dict[tuple[str, str], tuple[type[BaseModel] | None, Answers]] = {
    ("POST", "/api/agent/customers"): (CustomerIn, _CREATED),
    ("PATCH", "/api/agent/customers/{row_id}"): (CustomerPatch, _UPDATED),
    ("POST", "/api/agent/conversations"): (ConversationIn, _CREATED),
    ("PATCH", "/api/agent/conversations/{row_id}"): (ConversationPatch, _UPDATED),
    ("POST", "/api/agent/conversations/{row_id}/messages"): (MessagesIn, {202: MessagesAccepted}),
    ("POST", "/api/agent/leads"): (LeadIn, _CREATED),
    ("PATCH", "/api/agent/leads/{row_id}"): (LeadPatch, _UPDATED),
    ("POST", "/api/agent/appointments"): (AppointmentIn, _CREATED),
    ("POST", "/api/agent/cases"): (CaseIn, _CREATED),
    ("GET", "/api/agent/records/{table}/{row_id}"): (None, {200: RecordState}),
}


def attach(routes: Sequence[BaseRoute]) -> None:
    """Describe each ingest route in DOCS (agent token); a handler that documents itself is left alone."""
    for route in routes:
        if not isinstance(route, Route) or hasattr(route.endpoint, "__openapi__"):
            continue
        for method in sorted(route.methods or ()):
            entry = DOCS.get((method, route.path))
            if entry is not None:
                body, answers = entry
                document(request=body, responses=dict(answers), auth="agent", errors=_MISSING)(route.endpoint)
