"""schemathesis over /openapi.json, in-process (ASGI): no route answers any generated request with a 5xx.

The app is the production composition (`create_app(settings)`: its own engine, the vault's DriverProvider,
the real Temporal dev server), with a tenant whose encrypted credential points at a HubSpot sandbox served
on loopback. Positive and negative examples; each request carries the credential its route needs (agent
JWT for /api/agent/* and the tools, operator JWT for operator routes, an API key with every scope for /v1),
and `{tenant_id}` path parameters name that tenant, so the generated bodies reach the handlers past
authentication. Rate limits are off here so that volume does not turn into 429s.

EXAMPLES per operation and mode gives ≥ 1,000 requests over the whole document (counted in CASES).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.python.asgi import shutdown_lifespans
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from temporalio.testing import WorkflowEnvironment

from api.app import all_routes, create_app
from api.auth import mint_token
from api.keys import SCOPES, create_api_key
from api.openapi import build_spec
from sandboxes import hubspot as hubspot_sandbox
from sandboxes.serve import ServedSandbox, serve_in_thread
from settings import OAuthClientSettings, RateLimitSettings, Settings
from tests.support.tenants import create_tenant
from vault.connections import Actor
from vault.credentials import CredentialVault

pytestmark = pytest.mark.integration

EXAMPLES = 12  # per operation and mode: > 1,000 requests in all, in about two minutes on a 2-core machine
CASES: dict[str, int] = {}  # requests sent, by operation (printed at the end of the module)
PASSED: dict[str, int] = {}  # of which answered 2xx: the request got past authentication and validation


@dataclass(frozen=True)
class Callers:
    agent: str
    operator: str
    api_key: str
    tenant: uuid.UUID


@pytest.fixture(scope="module")
def crm() -> Iterator[tuple[ServedSandbox, hubspot_sandbox.HubSpotState]]:
    app = hubspot_sandbox.create_app()
    served = serve_in_thread(app)
    yield served, app.state.sandbox
    served.stop()


@pytest.fixture
def app_settings(settings: Settings, temporal_env: WorkflowEnvironment) -> Settings:
    address = temporal_env.client.service_client.config.target_host
    # An OAuth app for the tenant's provider: without one the connect flow answers 503 (a deployment that is not
    # configured), which would stop the fuzzer at that door.
    oauth = {"hubspot": OAuthClientSettings(client_id="fuzz-client", client_secret=SecretStr("fuzz-secret"))}
    return settings.model_copy(update={
        "rate_limits": RateLimitSettings(enabled=False), "oauth_clients": oauth,
        "temporal": settings.temporal.model_copy(update={"address": address})})


@pytest_asyncio.fixture(loop_scope="session")
async def callers(app_settings: Settings, sessions: async_sessionmaker[AsyncSession],
                  crm: tuple[ServedSandbox, hubspot_sandbox.HubSpotState]) -> Callers:
    served, state = crm
    tenant = await create_tenant(sessions, settings={"base_url": served.base_url, "portal_id": state.portal_id})
    vault = CredentialVault.from_settings(app_settings, sessions)
    await vault.store(tenant, "hubspot", {"auth": "bearer", "access_token": state.tokens.issue_access()},
                      actor=Actor(type="platform_operator", id="schemathesis", purpose="connect"))
    key = await create_api_key(sessions, tenant, "schemathesis", list(SCOPES))
    return Callers(agent=mint_token(app_settings, subject="agent-fuzz", role="agent", tenant_id=tenant),
                   operator=mint_token(app_settings, subject="op-fuzz", role="operator", tenant_id=tenant),
                   api_key=key.key, tenant=tenant)


@pytest.fixture
def asgi_app(app_settings: Settings, callers: Callers) -> Iterator[Starlette]:
    # Built from settings: its lifespan (run by schemathesis in its own event loop) owns the engine and clients.
    app = create_app(app_settings)
    app.state.callers = callers
    yield app
    shutdown_lifespans()


# The document the app serves (`GET /openapi.json` answers exactly this), built from its routes at import,
# since schemathesis's fixture-based loader does not run on this pytest; requests go to the per-test app.
schema = schemathesis.openapi.from_dict(build_spec(all_routes()))


def credential_for(path: str, callers: Callers) -> str:
    if path.startswith("/v1/"):
        return callers.api_key
    if path.startswith(("/api/tools/", "/api/agent/")):
        return callers.agent
    return callers.operator


@pytest.fixture(scope="module", autouse=True)
def report_cases() -> Iterator[None]:
    yield
    print(f"\nschemathesis: {sum(CASES.values())} requests over {len(CASES)} operations, "
          f"{sum(PASSED.values())} answered 2xx")
    for label, count in sorted(CASES.items()):
        print(f"  {label}: {count} sent, {PASSED.get(label, 0)} 2xx")


@schema.parametrize()
@hypothesis_settings(max_examples=EXAMPLES, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                            HealthCheck.filter_too_much])
def test_no_generated_request_gets_a_server_error(case: schemathesis.Case, asgi_app: Starlette) -> None:
    callers: Callers = asgi_app.state.callers
    if case.path_parameters and "tenant_id" in case.path_parameters:
        case.path_parameters["tenant_id"] = str(callers.tenant)  # the operator's own tenant: past the 404
    CASES[case.operation.label] = CASES.get(case.operation.label, 0) + 1
    headers = {"authorization": f"Bearer {credential_for(case.path, callers)}", "x-request-id": uuid.uuid4().hex}
    response = case.call(app=asgi_app, base_url="http://testserver", headers=headers)
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code < 300:
        PASSED[case.operation.label] = PASSED.get(case.operation.label, 0) + 1
    if response.status_code >= 400:
        assert response.headers["content-type"] == ["application/problem+json"], response.headers
    # Whatever the spec documents for the answer's status, the body matches (tool answers, problems, ...).
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
