"""The public API for the tenant's own systems: every CRM verb under `/v1/crm/*`, and `POST /v1/leads`.

API keys (api/keys.py) bound to one tenant, with scopes (`crm:read` for lookup/search/list-recent,
`crm:write` for create-record/update-record, `leads:write`); 200 requests/min per key (api/ratelimit.py);
idempotency over the ledger (api/idempotency.py). The read/update verbs run the agent tools' own calls
(api/routes/tools.py: same deadline, same field mapping) and share the tools' per-tenant budget. CRM
failures are problem+json with the tools' stable `reason`, `retry_after` and `suggested_fallback`.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api import idempotency, ingest_writes, schemas
from api.context import context_of
from api.crm import classify, driver_provider, failure_problem, load_field_map, request_id, require_supported
from api.errors import read_json
from api.ingest_models import LeadIn
from api.keys import KeyPrincipal, require_api_key
from api.lifecycle import mirror_workflow_id
from api.openapi import document
from api.ratelimit import enforce
from api.routes.tools import TOOLS_BY_NAME, Tool
from drivers.errors import DriverError
from drivers.idempotency import request_fingerprint
from vault.connections import Actor

log = logging.getLogger(__name__)

CREATE_SCOPE, LEADS_SCOPE = "api:create-record", "api:leads"
CRM_ERRORS = {404: "The CRM has no such record", 409: "Idempotency key in use, or the CRM is not connected",
              502: "The CRM refused our credentials", 503: "The CRM is unavailable or throttling"}


async def _authorize(request: Request, scope: str) -> KeyPrincipal:
    principal = await require_api_key(request, scope)
    await enforce(request, "per_api_key", str(principal.key_id))
    return principal


def _answer(model: BaseModel, outcome: idempotency.Outcome, rid: str) -> JSONResponse:
    headers = {"X-Request-ID": rid} | ({"Idempotent-Replayed": "true"} if outcome.replayed else {})
    return JSONResponse(model.model_dump(mode="json"), status_code=outcome.status, headers=headers)


@document(request=schemas.CreateRecordRequest, auth="api_key", errors=CRM_ERRORS,
          responses={201: schemas.CreateRecordResponse, 200: schemas.CreateRecordResponse})
async def create_record(request: Request) -> Response:
    """Create a record in the tenant's CRM (scope `crm:write`).

    The same `idempotency_key` with the same body replays the first answer (header `Idempotent-Replayed: true`);
    with a different body it is a 422; while the first request is still running it is a 409.
    """
    principal = await _authorize(request, "crm:write")
    ctx = context_of(request)
    body = schemas.CreateRecordRequest.model_validate(await read_json(request, ctx.settings.api.max_body_bytes))
    rid = request_id(request)
    # The tenant's own system, acting through a key: audited under the key's id, never the key itself.
    actor = Actor(type="tool", id=f"api_key:{principal.key_id}", purpose="v1.create_record", request_id=rid)

    async def create() -> idempotency.Outcome:
        try:
            async with driver_provider(request).open(principal.tenant_id, actor) as driver:
                require_supported(driver, body.object)
                fields = await load_field_map(ctx.sessions, principal.tenant_id, driver)
                # Namespaced so a client's key never collides with the keys the lifecycle uses for its writes.
                payload = fields.to_provider(body.object, dict(body.fields), creating=True)
                result = await driver.create_record(body.object, payload, f"v1:{body.idempotency_key}")
        except (DriverError, LookupError) as exc:
            failure = classify(exc)
            log.warning("v1 create-record for tenant %s: CRM failure %s (%s)", principal.tenant_id, failure.reason,
                        type(exc).__name__)
            raise failure_problem(failure) from None
        return idempotency.Outcome(status=201 if result.created else 200, external_id=result.external_id,
                                   record_url=result.record_url)

    outcome = await idempotency.once(ctx.sessions, principal.tenant_id, CREATE_SCOPE, body.idempotency_key,
                                     request_fingerprint(body.object, dict(body.fields)), create)
    return _answer(schemas.CreateRecordResponse(external_id=outcome.external_id or "", record_url=outcome.record_url),
                   outcome, rid)


@document(request=schemas.LeadRequest, auth="api_key", responses={202: schemas.LeadAccepted},
          errors={409: "Idempotency key in use"})
async def create_lead(request: Request) -> Response:
    """Hand a lead from the tenant's own system to the lifecycle (scope `leads:write`).

    Stored with its mirror intent in one transaction and answered at once (202); the lifecycle writes it to the
    CRM. Idempotent on `idempotency_key` like `/v1/crm/create-record`.
    """
    principal = await _authorize(request, "leads:write")
    ctx = context_of(request)
    body = schemas.LeadRequest.model_validate(await read_json(request, ctx.settings.api.max_body_bytes))
    tenant = principal.tenant_id
    # Ids derived from the key: a retry whose first attempt committed finds its rows instead of adding more.
    lead_id = uuid.uuid5(tenant, f"v1-lead:{body.idempotency_key}")
    customer_id = uuid.uuid5(tenant, f"v1-customer:{body.idempotency_key}") if body.customer else None

    async def ingest() -> idempotency.Outcome:
        async with ctx.sessions() as session, session.begin():
            await ingest_writes.require_tenant(session, tenant)
            if body.customer is not None:
                await ingest_writes.new_customer(session, tenant, body.customer.model_copy(update={"id": customer_id}))
            await ingest_writes.new_lead(session, tenant, LeadIn(
                id=lead_id, customer_id=customer_id, source=body.source, status=body.status, fields=body.fields,
                qualification=body.qualification))
        relay = ctx.extras.get("relay")
        if relay is not None:
            relay.nudge()
        return idempotency.Outcome(status=202, external_id=str(lead_id))

    fingerprint = request_fingerprint("lead", body.model_dump(mode="json", exclude={"idempotency_key"}))
    outcome = await idempotency.once(ctx.sessions, tenant, LEADS_SCOPE, body.idempotency_key, fingerprint, ingest)
    accepted = schemas.LeadAccepted(lead_id=str(lead_id), customer_id=str(customer_id) if customer_id else None,
                                    sync_state="pending", workflow_id=mirror_workflow_id(tenant))
    return _answer(accepted, outcome, request_id(request))


def verb_route(path: str, tool: Tool[Any], scope: str) -> Route:
    """`POST /v1/crm/<path>`: the agent tool `tool` for an API key with `scope`; failures as problems."""

    async def endpoint(request: Request) -> Response:
        principal = await _authorize(request, scope)
        # The same per-tenant budget as the agent's calls of this verb: both reach the same CRM.
        await enforce(request, "per_tenant_tool", str(principal.tenant_id), tool.name)
        ctx = context_of(request)
        body = tool.body.model_validate(await read_json(request, ctx.settings.api.max_body_bytes))
        rid = request_id(request)
        actor = Actor(type="tool", id=f"api_key:{principal.key_id}", purpose=f"v1.{tool.name}", request_id=rid,
                      conversation_id=body.conversation_id)
        try:
            answer = await tool.run(request, body, principal.tenant_id, actor)
        except (DriverError, LookupError) as exc:
            failure = classify(exc)
            log.warning("v1 %s for tenant %s: CRM failure %s (%s)", path, principal.tenant_id, failure.reason,
                        type(exc).__name__)
            raise failure_problem(failure) from None
        return JSONResponse(answer.model_dump(mode="json"), headers={"X-Request-ID": rid})

    endpoint.__name__ = f"v1_{path.replace('-', '_')}"
    endpoint.__doc__ = (f"{(tool.call.__doc__ or '').strip()}\n\nScope `{scope}`. The agent tool `{tool.name}`'s "
                        "answer; a CRM failure is a problem with `reason`, `retry_after` and `suggested_fallback`.")
    documented = document(request=tool.body, responses={200: tool.answer}, auth="api_key", errors=CRM_ERRORS)
    return Route(f"/v1/crm/{path}", documented(endpoint), methods=["POST"])


VERBS = [("lookup", "crm_lookup_customer", "crm:read"), ("search", "crm_search_records", "crm:read"),
         ("update-record", "crm_update_record", "crm:write"), ("list-recent", "crm_list_recent", "crm:read")]
routes = [Route("/v1/crm/create-record", create_record, methods=["POST"]),
          *(verb_route(path, TOOLS_BY_NAME[name], scope) for path, name, scope in VERBS),
          Route("/v1/leads", create_lead, methods=["POST"])]
