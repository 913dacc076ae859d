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
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from api import schemas
from api.auth import Principal, require_agent
from api.context import context_of
from api.crm import FieldMap, classify, driver_provider, load_field_map, request_id, require_supported
from api.errors import read_json
from api.lookup import indexed, lookup_deadline, remaining, started, unknown_caller, within
from api.openapi import document
from api.ratelimit import enforce
from drivers.base import BaseDriver, CrmObject, CustomerRecord, Record
from drivers.errors import DriverError, UnavailableError
from drivers.idempotency import request_fingerprint
from settings import Settings
from store.base import utcnow
from vault.connections import Actor
from vault.indexed import learning_held

log = logging.getLogger(__name__)

# A caller is on the phone: a CRM that has not answered by then will not answer usefully.
TOOL_DEADLINE_SECONDS = 10.0

In = TypeVar("In", bound=schemas.ToolRequest)


@dataclass(frozen=True)
class Tool(Generic[In]):
    """One tool route: its body model, its success answer, and the call it makes with the tenant's driver."""

    name: str
    body: type[In]
    answer: type[BaseModel]
    call: Callable[[In, BaseDriver, FieldMap], Awaitable[BaseModel]]
    # Voice-grade tools: their own deadline (seconds, from settings), and the answer given when it passes; the
    # call then finishes in the background (api/lookup.py). None: TOOL_DEADLINE_SECONDS, then UnavailableError.
    deadline: Callable[[Settings], float] | None = None
    timed_out: Callable[[], BaseModel] | None = None

    async def __call__(self, request: Request) -> Response:
        """Authenticate, limit, validate, open the tenant's driver and make the call."""
        started(request)  # a voice-grade deadline counts from here: the caller is already waiting
        principal: Principal = require_agent(request)
        payload = await read_json(request, context_of(request).settings.api.max_body_bytes)
        rid = request_id(request)
        with learning_held() as held:  # the index writes that follow a lookup wait until the caller has the answer
            answer = await self.invoke(request, principal, payload, rid)
        return _Answer(answer.model_dump(mode="json"), headers={"X-Request-ID": rid}, then=held.release)

    async def invoke(self, request: Request, principal: Principal, payload: Any, rid: str) -> BaseModel:
        """Limit, validate and call for an authenticated agent (the HTTP route and the MCP server both come here).

        Bad input raises Problem (or pydantic's ValidationError); a CRM failure is the `ok: false` answer.
        """
        tenant_id = principal.require_tenant()
        await enforce(request, "per_tenant_tool", str(tenant_id), self.name, ok=False, reason="tool_rate_limited",
                      suggested_fallback="retry_later")
        body = self.body.model_validate(payload)
        actor = Actor(type="tool", id=principal.subject, purpose=self.name, request_id=rid,
                      conversation_id=body.conversation_id)
        try:
            return await self.run(request, body, tenant_id, actor)
        except (DriverError, LookupError) as exc:
            return _failure(exc, tenant_id, self.name)

    async def run(self, request: Request, body: In, tenant_id: uuid.UUID, actor: Actor) -> BaseModel:
        """Open the tenant's driver and make the call within the deadline (shared with the /v1 routes).

        Raises DriverError (a deadline overrun is UnavailableError) or LookupError (no connected CRM).
        """
        if self.deadline is not None and self.timed_out is not None:
            try:
                return await within(request, self._call(request, body, tenant_id, actor),
                                    remaining(request, self.deadline(context_of(request).settings)))
            except TimeoutError:
                return self.timed_out()
        return await self._call(request, body, tenant_id, actor)

    async def _call(self, request: Request, body: In, tenant_id: uuid.UUID, actor: Actor) -> BaseModel:
        ctx = context_of(request)
        try:
            async with asyncio.timeout(TOOL_DEADLINE_SECONDS):
                async with driver_provider(request).open(tenant_id, actor) as opened:
                    driver = indexed(request, opened, tenant_id)  # the phone index in front (api/lookup.py)
                    return await self.call(body, driver, await load_field_map(ctx.sessions, tenant_id, driver))
        except TimeoutError:
            raise UnavailableError("deadline exceeded", provider="crm") from None

    def route(self) -> Route:
        async def endpoint(request: Request) -> Response:
            return await self(request)
        endpoint.__name__, endpoint.__doc__ = self.name, self.call.__doc__
        # 200 either way: the call worked, and says whether the CRM answered (`ok`).
        documented = document(request=self.body, responses={200: (self.answer, schemas.ToolFailure)},
                              auth="agent")(endpoint)
        return Route(f"/api/tools/{self.name}", documented, methods=["POST"])


class _Answer(JSONResponse):
    """A tool's answer that runs `then` once it is sent, or once sending failed (a caller who hung up)."""

    def __init__(self, content: Any, *, headers: dict[str, str], then: Callable[[], None]) -> None:
        super().__init__(content, headers=headers)
        self.then = then

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.then()


def _failure(exc: DriverError | LookupError, tenant_id: uuid.UUID, tool: str) -> schemas.ToolFailure:
    failure = classify(exc)
    # Ids and the taxonomy code only: a provider message can echo customer content.
    log.warning("tool %s for tenant %s: CRM failure %s (%s)", tool, tenant_id, failure.reason, type(exc).__name__)
    return schemas.ToolFailure(reason=failure.reason, retry_after=failure.retry_after,
                               suggested_fallback=failure.fallback, message=failure.message, fields=failure.fields)


def _customer(found: CustomerRecord, fields: FieldMap) -> schemas.CustomerOut:
    return schemas.CustomerOut(external_id=found.external_id, name=found.name, phone=found.phone, email=found.email,
                               fields=fields.to_canonical(CrmObject.CUSTOMER, found.fields), url=found.url)


def _records(records: list[Record], fields: FieldMap) -> schemas.RecordsResponse:
    out = [schemas.RecordOut(object=r.object, external_id=r.external_id, fields=fields.to_canonical(r.object, r.fields),
                             url=r.url, updated_at=r.updated_at) for r in records]
    return schemas.RecordsResponse(count=len(out), records=out)


async def lookup_customer(body: schemas.LookupCustomerRequest, driver: BaseDriver, fields: FieldMap) -> BaseModel:
    """Find the caller in the CRM by phone (preferred), email or external id; not found is `found: false`."""
    found = await driver.lookup_customer(phone=body.phone, email=body.email, external_id=body.external_id)
    if found is None:
        return schemas.LookupCustomerResponse(found=False)
    return schemas.LookupCustomerResponse(found=True, customer=_customer(found, fields))


async def search_records(body: schemas.SearchRecordsRequest, driver: BaseDriver, fields: FieldMap) -> BaseModel:
    """Free-text search within one CRM object."""
    require_supported(driver, body.object)
    return _records(await driver.search_records(body.object, body.query, body.limit), fields)


async def create_record(body: schemas.CreateRecordToolRequest, driver: BaseDriver, fields: FieldMap) -> BaseModel:
    """Create a record; retried with the same idempotency key (or the same fields in the same conversation),
    it returns the record the first call made."""
    require_supported(driver, body.object)
    mapped = fields.to_provider(body.object, dict(body.fields), creating=True)
    if body.idempotency_key is not None:
        key = f"tool:{body.idempotency_key}"
    elif body.conversation_id is not None:
        key = f"tool:{body.conversation_id}:{request_fingerprint(body.object, mapped)[:32]}"
    else:
        key = f"tool:{uuid.uuid4().hex}"
    result = await driver.create_record(body.object, mapped, key)
    return schemas.CreateRecordToolResponse(external_id=result.external_id, record_url=result.record_url,
                                            created=result.created)


async def update_record(body: schemas.UpdateRecordRequest, driver: BaseDriver, fields: FieldMap) -> BaseModel:
    """Partial update: only the given fields change."""
    require_supported(driver, body.object)
    changes = fields.to_provider(body.object, dict(body.fields))
    record = await driver.update_record(body.object, body.external_id, changes)
    if record is None:
        return schemas.UpdateRecordResponse()
    return schemas.UpdateRecordResponse(record=_records([record], fields).records[0])


async def list_recent(body: schemas.ListRecentRequest, driver: BaseDriver, fields: FieldMap) -> BaseModel:
    """Records of one object modified since `since` (default: the last 24 hours), oldest first."""
    require_supported(driver, body.object)
    since = body.since or utcnow() - timedelta(hours=24)
    return _records(await driver.list_recent(body.object, since, body.limit), fields)


TOOLS: list[Tool[Any]] = [
    Tool("crm_lookup_customer", schemas.LookupCustomerRequest, schemas.LookupCustomerResponse, lookup_customer,
         deadline=lookup_deadline, timed_out=unknown_caller),
    Tool("crm_search_records", schemas.SearchRecordsRequest, schemas.RecordsResponse, search_records),
    Tool("crm_create_record", schemas.CreateRecordToolRequest, schemas.CreateRecordToolResponse, create_record),
    Tool("crm_update_record", schemas.UpdateRecordRequest, schemas.UpdateRecordResponse, update_record),
    Tool("crm_list_recent", schemas.ListRecentRequest, schemas.RecordsResponse, list_recent),
]
routes = [tool.route() for tool in TOOLS]
TOOLS_BY_NAME: dict[str, Tool[Any]] = {tool.name: tool for tool in TOOLS}
