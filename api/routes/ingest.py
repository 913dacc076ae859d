"""Agent ingest: record what the agent learned (conversations, messages, customers, leads, appointments, cases).

JWT as the agent; the tenant comes from the token, never from the body. Each write commits the class-(c)
row and its mirror intent in one transaction and answers at once — 201 for a new row, 200 for a retried
POST with the same id, 202 for an update — without waiting for the CRM or for Temporal (the relay
delivers the intent; if Temporal is down, it catches up when Temporal returns).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api import ingest_writes as writes
from api.auth import require_agent
from api.context import context_of
from api.errors import Problem, read_json
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
    merged,
)
from api.lifecycle import mirror_workflow_id
from api.regions import tenant_region
from store import content
from store.base import ContentRow
from store.models import Conversation, Customer, Lead

B = TypeVar("B", bound=BaseModel)
Write = Callable[[AsyncSession, uuid.UUID], Awaitable[JSONResponse]]
Create = Callable[[AsyncSession, uuid.UUID, B], Awaitable[tuple[Any, bool]]]


async def _body(request: Request, model: type[B]) -> B:
    principal = require_agent(request)  # 401/403 before looking at the body
    raw = await read_json(request, context_of(request).settings.api.max_body_bytes)
    if not isinstance(raw, dict):
        raise Problem(422, "invalid-body", "The body must be a JSON object.")
    # Phones are read in the tenant's region (050 123 4567 is a UAE mobile for an AE tenant).
    region = await tenant_region(request, principal.require_tenant())
    return model.model_validate(raw, context={"region": region})  # ValidationError -> 422 (locations, no values)


async def _commit(request: Request, write: Write, *, one_statement: bool = False) -> JSONResponse:
    """Run `write` in one transaction for the token's tenant, then nudge the relay.

    `one_statement`: `write` changes the database with a single statement (reads before it are fine), which
    PostgreSQL makes atomic by itself, so it runs without BEGIN/COMMIT — two round trips fewer on the hot path.
    """
    tenant_id = require_agent(request).require_tenant()
    ctx = context_of(request)
    async with ctx.sessions() as session, session.begin():
        if one_statement and session.get_bind().dialect.name == "postgresql":
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        await writes.require_tenant(session, tenant_id)
        response = await write(session, tenant_id)
    relay = ctx.extras.get("relay")
    if relay is not None:
        relay.nudge()
    return response


def _accepted(row: ContentRow, table: str, created: bool, tenant_id: uuid.UUID, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"id": str(row.id), "table": table, "sync_state": row.sync_state,
                            "workflow_id": mirror_workflow_id(tenant_id)}
    body.update({k: v if isinstance(v, int) else str(v) for k, v in extra.items()})  # counts stay numbers
    return JSONResponse(body, status_code=201 if created else 200)


def _updated(table: str, tenant_id: uuid.UUID, row: ContentRow, changed: bool) -> JSONResponse:
    """202 when the change was accepted for the CRM; 200 with `changed: false` when there was nothing to change."""
    return JSONResponse({"id": str(row.id), "table": table, "changed": changed,
                         "sync_state": "pending" if changed else row.sync_state,
                         "workflow_id": mirror_workflow_id(tenant_id)}, status_code=202 if changed else 200)


def _row_id(request: Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.path_params["row_id"])
    except ValueError:
        raise Problem(404, "not-found", "No such record.") from None


def _create(model: type[B], table: str, create: Create[B], *, one_statement: bool = False
            ) -> Callable[[Request], Awaitable[JSONResponse]]:
    """POST handler: validate, create the row (or find the one a retried POST made) with its intent.

    `one_statement` (see `_commit`): only for creates whose sole write is the row + intent statement."""

    async def endpoint(request: Request) -> JSONResponse:
        body = await _body(request, model)

        async def write(session: AsyncSession, tenant_id: uuid.UUID) -> JSONResponse:
            row, created = await create(session, tenant_id, body)
            return _accepted(row, table, created, tenant_id)

        return await _commit(request, write, one_statement=one_statement)

    return endpoint


# A customer's only write is `writes.insert` (row + intent in one statement); a lead may add its qualification.
post_customer = _create(CustomerIn, "customers", writes.new_customer, one_statement=True)
post_lead = _create(LeadIn, "leads", writes.new_lead)
post_appointment = _create(AppointmentIn, "appointments", writes.new_appointment)
post_case = _create(CaseIn, "cases", writes.new_case)


async def patch_customer(request: Request) -> JSONResponse:
    body, row_id = await _body(request, CustomerPatch), _row_id(request)

    async def write(session: AsyncSession, tenant_id: uuid.UUID) -> JSONResponse:
        row = await writes.require_row(session, Customer, tenant_id, row_id, what="customer", status=404)
        values = body.model_dump(exclude_unset=True, exclude={"fields"}) | {"fields": merged(row.fields, body.fields)}
        changed = await writes.update(session, "customers", tenant_id, row, values)
        return _updated("customers", tenant_id, row, changed)

    return await _commit(request, write)


async def post_conversation(request: Request) -> JSONResponse:
    body = await _body(request, ConversationIn)

    async def write(session: AsyncSession, tenant_id: uuid.UUID) -> JSONResponse:
        found = await writes.existing(session, Conversation, tenant_id, body.id)
        if found is not None:  # a retried POST: the same answer, customer id included (the agent may need it)
            return _accepted(found, "conversations", False, tenant_id, customer_id=found.customer_id)
        if body.customer is not None:
            customer, _ = await writes.new_customer(session, tenant_id, body.customer)
            customer_id = customer.id
        else:
            assert body.customer_id is not None  # the model requires exactly one of them
            customer_id = body.customer_id
            await writes.require_row(session, Customer, tenant_id, customer_id, what="customer")
        row = Conversation(id=body.id or uuid.uuid4(), tenant_id=tenant_id, customer_id=customer_id,
                           channel=body.channel, sync_attempts=0, sync_state="pending",
                           **({"started_at": body.started_at} if body.started_at else {}))
        await writes.insert(session, row, "conversations")
        added, _ = await writes.add_messages(session, tenant_id, row.id, body.messages)
        return _accepted(row, "conversations", True, tenant_id, customer_id=customer_id, messages=len(added))

    return await _commit(request, write)


async def patch_conversation(request: Request) -> JSONResponse:
    body, row_id = await _body(request, ConversationPatch), _row_id(request)

    async def write(session: AsyncSession, tenant_id: uuid.UUID) -> JSONResponse:
        row = await writes.require_row(session, Conversation, tenant_id, row_id, what="conversation", status=404)
        changed = await writes.update(session, "conversations", tenant_id, row, body.model_dump(exclude_unset=True))
        return _updated("conversations", tenant_id, row, changed)

    return await _commit(request, write)


async def post_messages(request: Request) -> JSONResponse:
    body, conversation_id = await _body(request, MessagesIn), _row_id(request)

    async def write(session: AsyncSession, tenant_id: uuid.UUID) -> JSONResponse:
        await writes.require_conversation(session, tenant_id, conversation_id)
        added, duplicates = await writes.add_messages(session, tenant_id, conversation_id, body.messages)
        return JSONResponse({"conversation_id": str(conversation_id), "accepted": len(added),
                             "duplicates": duplicates, "message_ids": [str(i) for i in added],
                             "workflow_id": mirror_workflow_id(tenant_id)},
                            status_code=202)

    return await _commit(request, write)


async def patch_lead(request: Request) -> JSONResponse:
    body, row_id = await _body(request, LeadPatch), _row_id(request)

    async def write(session: AsyncSession, tenant_id: uuid.UUID) -> JSONResponse:
        row = await writes.require_row(session, Lead, tenant_id, row_id, what="lead", status=404)
        values: dict[str, Any] = {"fields": merged(row.fields, body.fields)}
        if body.status is not None:
            values["status"] = body.status
        changed = await writes.update(session, "leads", tenant_id, row, values)
        if body.qualification is not None:
            await writes.set_qualification(session, tenant_id, row_id, body.qualification)
            changed = True
        return _updated("leads", tenant_id, row, changed)

    return await _commit(request, write)


async def get_record(request: Request) -> JSONResponse:
    """Where a row stands (states and ids only): `sync_state` pending | retrying | blocked | synced (until
    `purge_after`), or 404 once purged."""
    tenant_id = require_agent(request).require_tenant()
    table, row_id = request.path_params["table"], _row_id(request)
    if table not in content.TABLES:
        raise Problem(404, "not-found", f"{table} is not a record table.")
    async with context_of(request).sessions() as session:
        row = await content.load(session, table, tenant_id, row_id)
    if row is None:
        raise Problem(404, "not-found", "No such record: it never existed or was purged after its window.")
    stamp = {name: (value.isoformat() if (value := getattr(row, name)) else None)
             for name in ("created_at", "synced_at", "purge_after")}
    return JSONResponse({"id": str(row.id), "table": table, "sync_state": row.sync_state,
                         "crm_external_id": row.crm_external_id, "sync_attempts": row.sync_attempts,
                         "last_sync_error": row.last_sync_error, **stamp,
                         "retry_at": row.retry_at.isoformat() if row.retry_at else None,
                         "workflow_id": mirror_workflow_id(tenant_id)})


PREFIX = "/api/agent"
routes = [
    Route(f"{PREFIX}/customers", post_customer, methods=["POST"]),
    Route(f"{PREFIX}/customers/{{row_id}}", patch_customer, methods=["PATCH"]),
    Route(f"{PREFIX}/conversations", post_conversation, methods=["POST"]),
    Route(f"{PREFIX}/conversations/{{row_id}}", patch_conversation, methods=["PATCH"]),
    Route(f"{PREFIX}/conversations/{{row_id}}/messages", post_messages, methods=["POST"]),
    Route(f"{PREFIX}/leads", post_lead, methods=["POST"]),
    Route(f"{PREFIX}/leads/{{row_id}}", patch_lead, methods=["PATCH"]),
    Route(f"{PREFIX}/appointments", post_appointment, methods=["POST"]),
    Route(f"{PREFIX}/cases", post_case, methods=["POST"]),
    Route(f"{PREFIX}/records/{{table}}/{{row_id}}", get_record, methods=["GET"]),
]
