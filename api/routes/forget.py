"""Operator routes for the right to erasure: request, status, and retry of failed CRM targets.

`POST /api/tenant/forget` takes the subject's identifiers (phone, email, CRM external id and/or our customer
id), seals them into the request row and starts `ForgetWorkflow` with an id derived from the keyed subject
hash, so a repeated request attaches to the running erasure. The tenant is the operator token's.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.client import WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.auth import Principal, require_operator
from api.context import AppContext, context_of
from api.errors import Problem, read_json
from api.openapi import document
from drivers.base import normalize_phone
from drivers.text import region_of
from store import erasure_requests as requests
from store.erasure import Subject, subject_hash
from store.models import ErasureOutcome, ErasureRequest, Tenant
from workflows import search_attributes
from workflows.forget_types import ForgetInput, forget_workflow_id

# Extra knobs a test (or an operator) may want per deployment live on the context, e.g. faster CRM retries.
FORGET_DEFAULTS_KEY = "forget_input_defaults"


class ForgetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=320)
    external_id: str | None = Field(default=None, min_length=1, max_length=255)
    customer_id: uuid.UUID | None = None


class ForgetAccepted(BaseModel):
    request_id: uuid.UUID
    status: str
    attached: bool = False  # True: an erasure of this subject was already running; this is its request
    subject_hash: str | None = None


class OutcomeView(BaseModel):
    id: uuid.UUID
    provider: str
    object: str
    external_id: str
    outcome: str  # pending | deleted (hard) | archived (soft) | not_found | divergent | failed
    hard_deleted: bool | None
    provider_purge_after: datetime | None  # archived: when the provider purges it (None: never by itself)
    needs_operator: bool
    error: str | None
    attempts: int
    source: str | None


class ErasureStatus(BaseModel):
    request_id: uuid.UUID
    status: str  # running | completed | needs_attention
    subject_hash: str
    requested_by: str
    created_at: datetime
    completed_at: datetime | None
    local_rows_scrubbed: int
    error: str | None
    identifiers_retained: bool
    needs_operator: int
    outcomes: list[OutcomeView]


def _subject(body: ForgetBody, region: str) -> Subject:
    phone = None
    if body.phone is not None:
        phone = normalize_phone(body.phone, region)
        if phone is None:
            raise Problem(422, "invalid-phone", "The phone is not a phone number.")
    email = None
    if body.email is not None:
        email = body.email.strip().lower()
        local, _, domain = email.partition("@")
        if not local or "." not in domain or any(ch.isspace() for ch in email):
            raise Problem(422, "invalid-email", "The email is not an email address.")
    subject = Subject(phone=phone, email=email, external_id=body.external_id.strip() if body.external_id else None,
                      customer_id=body.customer_id)
    if subject.is_empty():
        raise Problem(422, "no-identifiers", "Give at least one of phone, email, external_id or customer_id.")
    return subject


def _forget_input(ctx: AppContext, request: ErasureRequest) -> ForgetInput:
    return ForgetInput(request_id=request.id, tenant_id=request.tenant_id, subject_hash=request.subject_hash,
                       **ctx.extras.get(FORGET_DEFAULTS_KEY, {}))


async def _start(ctx: AppContext, request: ErasureRequest, *, attach: bool) -> WorkflowHandle[Any, Any]:
    try:
        client = await ctx.temporal.client()
        return await client.start_workflow(
            "ForgetWorkflow", _forget_input(ctx, request),
            id=forget_workflow_id(request.tenant_id, request.subject_hash), task_queue=ctx.settings.temporal.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING if attach else WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE, memo={"request_id": str(request.id)},
            search_attributes=TypedSearchAttributes([SearchAttributePair(search_attributes.TENANT,
                                                                         str(request.tenant_id))]))
    except WorkflowAlreadyStartedError:
        raise
    except Exception:  # Temporal unreachable: the request row stays; repeating the call starts it
        raise Problem(503, "temporal-unavailable", "The erasure is recorded but could not start yet; repeat "
                      "the request to start it.", headers={"Retry-After": "5"}, request_id=str(request.id)) from None


@document(request=ForgetBody, responses={202: ForgetAccepted}, auth="operator",
          errors={404: "Unknown tenant", 503: "Recorded, but Temporal is unreachable: repeat the request"})
async def create_forget(request: Request) -> JSONResponse:
    """Erase a subject (right to erasure): CRM records, local rows, outcomes and an audit trail.

    Identify the subject by any of phone, email, CRM external id and our customer id. A repeated request for
    the same subject while its erasure runs attaches to it. The tenant is the operator token's.
    """
    principal = require_operator(request)
    tenant_id = principal.require_tenant()
    ctx = context_of(request)
    body = ForgetBody.model_validate(await read_json(request, ctx.settings.api.max_body_bytes))
    accepted = await start_erasure(ctx, principal, tenant_id, body)
    return JSONResponse(accepted.model_dump(mode="json"), status_code=202)


async def start_erasure(ctx: AppContext, principal: Principal, tenant_id: uuid.UUID, body: ForgetBody
                        ) -> ForgetAccepted:
    """Record the erasure request (or attach to the subject's running one) and start its workflow."""
    key = ctx.settings.subject_hash_key.get_secret_value()
    async with ctx.sessions() as session, session.begin():
        tenant = (await session.execute(select(Tenant).where(Tenant.id == tenant_id))).scalar()
        if tenant is None:
            raise Problem(404, "not-found", "No such tenant.")
        subject = _subject(body, region_of(tenant.settings))
        hashed = subject_hash(key.encode(), tenant_id, subject)
        erasure = await requests.open_request_for(session, tenant_id, hashed)
        attached = erasure is not None
        if erasure is None:
            erasure = _new_request(principal, tenant_id, hashed, subject, key)
            session.add(erasure)
            await session.flush()
            requests.audit(session, erasure, "erasure.requested", actor_type="platform_operator",
                           actor_id=principal.subject)
    handle = await _start(ctx, erasure, attach=True)
    if not attached:
        owner = await (await handle.describe()).memo_value("request_id", default=str(erasure.id))
        if owner != str(erasure.id):  # a concurrent identical request won the start: use its request
            await _drop(ctx, erasure.id)
            erasure, attached = await _load(ctx, tenant_id, uuid.UUID(str(owner))), True
    return ForgetAccepted(request_id=erasure.id, status=erasure.status, attached=attached,
                          subject_hash=erasure.subject_hash)


def _new_request(principal: Principal, tenant_id: uuid.UUID, hashed: str, subject: Subject,
                 key: str) -> ErasureRequest:
    request_id = uuid.uuid4()
    return ErasureRequest(id=request_id, tenant_id=tenant_id, subject_hash=hashed,
                          requested_by=f"operator:{principal.subject}"[:200], status=requests.RUNNING,
                          workflow_id=forget_workflow_id(tenant_id, hashed), local_rows_scrubbed=0,
                          sealed_identifiers=requests.seal_subject(requests.sealing_key(key), tenant_id,
                                                                   request_id, subject))


async def _drop(ctx: AppContext, request_id: uuid.UUID) -> None:
    async with ctx.sessions() as session, session.begin():
        await session.delete(await requests.load_request(session, request_id))


async def _load(ctx: AppContext, tenant_id: uuid.UUID, request_id: uuid.UUID) -> ErasureRequest:
    async with ctx.sessions() as session:
        erasure = await session.get(ErasureRequest, request_id)
    if erasure is None or erasure.tenant_id != tenant_id:
        raise Problem(404, "not-found", "No such erasure request.")
    return erasure


@document(responses={200: ErasureStatus}, auth="operator", errors={404: "No such erasure request"})
async def get_forget(request: Request) -> JSONResponse:
    """An erasure request's state and its outcome per CRM record (divergent ones need an operator)."""
    tenant_id = require_operator(request).require_tenant()
    view = await erasure_status(context_of(request), tenant_id, request.path_params["request_id"])
    return JSONResponse(view.model_dump(mode="json"))


async def erasure_status(ctx: AppContext, tenant_id: uuid.UUID, request_id: uuid.UUID) -> ErasureStatus:
    erasure = await _load(ctx, tenant_id, request_id)
    async with ctx.sessions() as session:
        outcomes = (await session.execute(select(ErasureOutcome).where(ErasureOutcome.request_id == erasure.id)
                                          .order_by(ErasureOutcome.object, ErasureOutcome.external_id))).scalars()
        listed = [OutcomeView.model_validate(outcome, from_attributes=True) for outcome in outcomes]
    return ErasureStatus(
        request_id=erasure.id, status=erasure.status, subject_hash=erasure.subject_hash,
        requested_by=erasure.requested_by, created_at=erasure.created_at, completed_at=erasure.completed_at,
        local_rows_scrubbed=erasure.local_rows_scrubbed, error=erasure.error,
        identifiers_retained=erasure.sealed_identifiers is not None,
        needs_operator=sum(1 for item in listed if item.needs_operator), outcomes=listed)


@document(responses={202: ForgetAccepted}, auth="operator",
          errors={404: "No such erasure request", 409: "Running, nothing to retry, or another erasure of the "
                  "subject is running"})
async def retry_forget(request: Request) -> JSONResponse:
    """Retry an erasure's failed CRM steps (a new run of the same request acts only on what failed)."""
    principal = require_operator(request)
    tenant_id = principal.require_tenant()
    accepted = await retry_erasure(context_of(request), principal, tenant_id, request.path_params["request_id"])
    return JSONResponse(accepted.model_dump(mode="json"), status_code=202)


async def retry_erasure(ctx: AppContext, principal: Principal, tenant_id: uuid.UUID, request_id: uuid.UUID
                        ) -> ForgetAccepted:
    erasure = await _load(ctx, tenant_id, request_id)
    async with ctx.sessions() as session, session.begin():
        reopened = await requests.reopen(session, erasure.id, tenant_id)
        if reopened is None:
            raise Problem(409, "nothing-to-retry", "The erasure is running, or has no failed step to retry.",
                          erasure_status=erasure.status)
        requests.audit(session, reopened, "erasure.retry_requested", actor_type="platform_operator",
                       actor_id=principal.subject)
    try:
        await _start(ctx, reopened, attach=False)
    except (WorkflowAlreadyStartedError, Problem) as exc:
        async with ctx.sessions() as session, session.begin():
            (await requests.load_request(session, erasure.id)).status = requests.NEEDS_ATTENTION
        if isinstance(exc, Problem):
            raise
        raise Problem(409, "erasure-running",
                      "Another erasure of this subject is running; retry after it ends.") from None
    return ForgetAccepted(request_id=reopened.id, status=requests.RUNNING, subject_hash=reopened.subject_hash)


@document(responses={200: ErasureStatus}, auth="operator",
          errors={404: "No such erasure request or outcome", 409: "The outcome needs no hand deletion"})
async def record_manual_deletion(request: Request) -> JSONResponse:
    """Record that an operator deleted a `divergent` CRM record by hand at the provider; the request completes
    when nothing else needs attention."""
    principal = require_operator(request)
    tenant_id = principal.require_tenant()
    ctx = context_of(request)
    await resolve_divergent(ctx, principal, tenant_id, request.path_params["request_id"],
                            request.path_params["outcome_id"])
    view = await erasure_status(ctx, tenant_id, request.path_params["request_id"])
    return JSONResponse(view.model_dump(mode="json"))


async def resolve_divergent(ctx: AppContext, principal: Principal, tenant_id: uuid.UUID, request_id: uuid.UUID,
                            outcome_id: uuid.UUID) -> None:
    erasure = await _load(ctx, tenant_id, request_id)
    async with ctx.sessions() as session, session.begin():
        resolved = await requests.record_manual_deletion(session, erasure.id, outcome_id,
                                                         operator=principal.subject)
    if resolved is None:
        raise Problem(404, "not-found", "No such outcome.")
    if not resolved:
        raise Problem(409, "not-divergent", "Only a divergent record, or an archive the provider never purges, is "
                      "deleted by hand; this one is neither.")


routes = [
    Route("/api/tenant/forget", create_forget, methods=["POST"]),
    Route("/api/tenant/forget/{request_id:uuid}", get_forget, methods=["GET"]),
    Route("/api/tenant/forget/{request_id:uuid}/retry", retry_forget, methods=["POST"]),
    Route("/api/tenant/forget/{request_id:uuid}/outcomes/{outcome_id:uuid}/manual-deletion", record_manual_deletion,
          methods=["POST"]),
]
