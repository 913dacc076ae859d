"""Agent tool routes: `POST /api/tools/crm_*`, the verbs the voice/chat agent calls mid-conversation.

Agent JWT; the tenant comes from the token, never from the body. Each call resolves the tenant's driver
through the DriverProvider (credential decrypt audited as actor `tool`, with the request and conversation
id), maps fields through the tenant's field mapping and calls one verb. Bad input is a 4xx problem. A CRM
failure is a 200 answer `{"ok": false, "reason", "retry_after", "suggested_fallback"}` the agent can act on
("I'll have someone follow up"): the tool call itself worked, and the agent must never be handed made-up data.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api import schemas
from api.auth import Principal, require_agent
from api.context import context_of
from api.crm import FieldMap, classify, driver_provider, load_field_map, request_id, require_supported
from api.errors import read_json
from api.openapi import document
from api.ratelimit import enforce
from drivers.base import BaseDriver, CrmObject, CustomerRecord, Record
from drivers.errors import DriverError, UnavailableError
from drivers.idempotency import request_fingerprint
from store.base import utcnow
from vault.connections import Actor

log = logging.getLogger(__name__)

# A caller is on the phone: a CRM that has not answered by then will not answer usefully.
TOOL_DEADLINE_SECONDS = 10.0

In = TypeVar("In", bound=schemas.ToolRequest)
Verb = Callable[[BaseDriver, FieldMap], Awaitable[BaseModel]]


async def _run(request: Request, tool: str, model: type[In], verb: Callable[[In], Verb]) -> Response:
    """Authenticate, limit, validate, open the tenant's driver and run `verb(body)(driver, field_map)`."""
    principal: Principal = require_agent(request)
    tenant_id = principal.require_tenant()
    ctx = context_of(request)
    await enforce(request, "per_tenant_tool", str(tenant_id), tool, ok=False, reason="tool_rate_limited",
                  suggested_fallback="retry_later")
    body = model.model_validate(await read_json(request, ctx.settings.api.max_body_bytes))
    rid = request_id(request)
    actor = Actor(type="tool", id=principal.subject, purpose=tool, request_id=rid,
                  conversation_id=body.conversation_id)
    try:
        async with asyncio.timeout(TOOL_DEADLINE_SECONDS):
            async with driver_provider(request).open(tenant_id, actor) as driver:
                answer = await verb(body)(driver, await load_field_map(ctx.sessions, tenant_id, driver))
    except TimeoutError:
        answer = _failure(UnavailableError("deadline exceeded", provider="crm"), tenant_id, tool)
    except (DriverError, LookupError) as exc:
        answer = _failure(exc, tenant_id, tool)
    return JSONResponse(answer.model_dump(mode="json"), headers={"X-Request-ID": rid})


def _failure(exc: DriverError | LookupError, tenant_id: uuid.UUID, tool: str) -> schemas.ToolFailure:
    failure = classify(exc)
    # Ids and the taxonomy code only: a provider message can echo customer content.
    log.warning("tool %s for tenant %s: CRM failure %s (%s)", tool, tenant_id, failure.reason, type(exc).__name__)
    return schemas.ToolFailure(reason=failure.reason, retry_after=failure.retry_after,
                               suggested_fallback=failure.fallback, message=failure.message)


def _customer(found: CustomerRecord, fields: FieldMap) -> schemas.CustomerOut:
    return schemas.CustomerOut(external_id=found.external_id, name=found.name, phone=found.phone, email=found.email,
                               fields=fields.to_canonical(CrmObject.CUSTOMER, found.fields), url=found.url)


def _records(records: list[Record], fields: FieldMap) -> schemas.RecordsResponse:
    out = [schemas.RecordOut(object=r.object, external_id=r.external_id, fields=fields.to_canonical(r.object, r.fields),
                             url=r.url, updated_at=r.updated_at) for r in records]
    return schemas.RecordsResponse(count=len(out), records=out)


@document(request=schemas.LookupCustomerRequest, responses={200: schemas.LookupCustomerResponse}, auth="agent")
async def crm_lookup_customer(request: Request) -> Response:
    """Find the caller in the CRM by phone (preferred), email or external id; not found is `found: false`."""
    def verb(body: schemas.LookupCustomerRequest) -> Verb:
        async def call(driver: BaseDriver, fields: FieldMap) -> BaseModel:
            found = await driver.lookup_customer(phone=body.phone, email=body.email, external_id=body.external_id)
            if found is None:
                return schemas.LookupCustomerResponse(found=False)
            return schemas.LookupCustomerResponse(found=True, customer=_customer(found, fields))
        return call
    return await _run(request, "crm_lookup_customer", schemas.LookupCustomerRequest, verb)


@document(request=schemas.SearchRecordsRequest, responses={200: schemas.RecordsResponse}, auth="agent")
async def crm_search_records(request: Request) -> Response:
    """Free-text search within one CRM object."""
    def verb(body: schemas.SearchRecordsRequest) -> Verb:
        async def call(driver: BaseDriver, fields: FieldMap) -> BaseModel:
            require_supported(driver, body.object)
            return _records(await driver.search_records(body.object, body.query, body.limit), fields)
        return call
    return await _run(request, "crm_search_records", schemas.SearchRecordsRequest, verb)


@document(request=schemas.CreateRecordToolRequest, responses={200: schemas.CreateRecordToolResponse}, auth="agent")
async def crm_create_record(request: Request) -> Response:
    """Create a record; retried with the same idempotency key (or the same fields in the same conversation),
    it returns the record the first call made."""
    def verb(body: schemas.CreateRecordToolRequest) -> Verb:
        async def call(driver: BaseDriver, fields: FieldMap) -> BaseModel:
            require_supported(driver, body.object)
            mapped = fields.to_provider(body.object, dict(body.fields))
            if body.idempotency_key is not None:
                key = f"tool:{body.idempotency_key}"
            elif body.conversation_id is not None:
                key = f"tool:{body.conversation_id}:{request_fingerprint(body.object, mapped)[:32]}"
            else:
                key = f"tool:{uuid.uuid4().hex}"
            result = await driver.create_record(body.object, mapped, key)
            return schemas.CreateRecordToolResponse(external_id=result.external_id, record_url=result.record_url,
                                                    created=result.created)
        return call
    return await _run(request, "crm_create_record", schemas.CreateRecordToolRequest, verb)


@document(request=schemas.UpdateRecordRequest, responses={200: schemas.UpdateRecordResponse}, auth="agent")
async def crm_update_record(request: Request) -> Response:
    """Partial update: only the given fields change."""
    def verb(body: schemas.UpdateRecordRequest) -> Verb:
        async def call(driver: BaseDriver, fields: FieldMap) -> BaseModel:
            require_supported(driver, body.object)
            record = await driver.update_record(body.object, body.external_id,
                                                fields.to_provider(body.object, dict(body.fields)))
            if record is None:
                return schemas.UpdateRecordResponse()
            return schemas.UpdateRecordResponse(record=_records([record], fields).records[0])
        return call
    return await _run(request, "crm_update_record", schemas.UpdateRecordRequest, verb)


@document(request=schemas.ListRecentRequest, responses={200: schemas.RecordsResponse}, auth="agent")
async def crm_list_recent(request: Request) -> Response:
    """Records of one object modified since `since` (default: the last 24 hours), oldest first."""
    def verb(body: schemas.ListRecentRequest) -> Verb:
        async def call(driver: BaseDriver, fields: FieldMap) -> BaseModel:
            require_supported(driver, body.object)
            since = body.since or utcnow() - timedelta(hours=24)
            return _records(await driver.list_recent(body.object, since, body.limit), fields)
        return call
    return await _run(request, "crm_list_recent", schemas.ListRecentRequest, verb)


TOOLS = (crm_lookup_customer, crm_search_records, crm_create_record, crm_update_record, crm_list_recent)
routes = [Route(f"/api/tools/{tool.__name__}", tool, methods=["POST"]) for tool in TOOLS]
