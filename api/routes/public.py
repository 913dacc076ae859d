"""The public API for the tenant's own systems: `POST /v1/crm/create-record` (and `POST /v1/leads`).

API keys (api/keys.py) bound to one tenant, with scopes; 200 requests/min per key (api/ratelimit.py);
idempotency over the ledger (api/idempotency.py). CRM failures are problem+json with a stable `reason`.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api import idempotency, schemas
from api.context import context_of
from api.crm import classify, driver_provider, failure_problem, load_field_map, request_id, require_supported
from api.errors import read_json
from api.keys import KeyPrincipal, require_api_key
from api.openapi import document
from api.ratelimit import enforce
from drivers.errors import DriverError
from drivers.idempotency import request_fingerprint
from vault.connections import Actor

log = logging.getLogger(__name__)

CREATE_SCOPE = "api:create-record"


async def _authorize(request: Request, scope: str) -> KeyPrincipal:
    principal = await require_api_key(request, scope)
    await enforce(request, "per_api_key", str(principal.key_id))
    return principal


def _actor(principal: KeyPrincipal, purpose: str, rid: str) -> Actor:
    # The tenant's own system, acting through a key: audited under the key's id, never the key itself.
    return Actor(type="tool", id=f"api_key:{principal.key_id}", purpose=purpose, request_id=rid)


@document(request=schemas.CreateRecordRequest, auth="api_key",
          responses={201: schemas.CreateRecordResponse, 200: schemas.CreateRecordResponse},
          errors={404: "The CRM has no such record", 409: "Idempotency key in use, or the CRM is not connected",
                  502: "The CRM refused our credentials", 503: "The CRM is unavailable or throttling"})
async def create_record(request: Request) -> Response:
    """Create a record in the tenant's CRM (scope `crm:write`).

    The same `idempotency_key` with the same body replays the first answer (header `Idempotent-Replayed: true`);
    with a different body it is a 422; while the first request is still running it is a 409.
    """
    principal = await _authorize(request, "crm:write")
    ctx = context_of(request)
    body = schemas.CreateRecordRequest.model_validate(await read_json(request, ctx.settings.api.max_body_bytes))
    rid = request_id(request)
    fingerprint = request_fingerprint(body.object, dict(body.fields))
    claimed = await idempotency.claim(ctx.sessions, principal.tenant_id, CREATE_SCOPE, body.idempotency_key,
                                      fingerprint)
    if isinstance(claimed, idempotency.Replay):
        answer = schemas.CreateRecordResponse(external_id=claimed.external_id or "", record_url=claimed.record_url)
        return JSONResponse(answer.model_dump(mode="json"), status_code=claimed.status,
                            headers={"Idempotent-Replayed": "true", "X-Request-ID": rid})
    try:
        async with driver_provider(request).open(principal.tenant_id, _actor(principal, "v1.create_record", rid)) \
                as driver:
            require_supported(driver, body.object)
            fields = await load_field_map(ctx.sessions, principal.tenant_id, driver)
            # Namespaced so a client's key can never collide with the keys the lifecycle uses for its own writes.
            result = await driver.create_record(body.object, fields.to_provider(body.object, dict(body.fields)),
                                                f"v1:{body.idempotency_key}")
    except (DriverError, LookupError) as exc:
        await idempotency.release(ctx.sessions, claimed)
        failure = classify(exc)
        log.warning("v1 create-record for tenant %s: CRM failure %s (%s)", principal.tenant_id, failure.reason,
                    type(exc).__name__)
        raise failure_problem(failure) from None
    except BaseException:
        await idempotency.release(ctx.sessions, claimed)
        raise
    status = 201 if result.created else 200
    await idempotency.complete(ctx.sessions, claimed, status=status, external_id=result.external_id,
                               record_url=result.record_url)
    answer = schemas.CreateRecordResponse(external_id=result.external_id, record_url=result.record_url)
    return JSONResponse(answer.model_dump(mode="json"), status_code=status, headers={"X-Request-ID": rid})


routes = [Route("/v1/crm/create-record", create_record, methods=["POST"])]
