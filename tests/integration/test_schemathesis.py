"""schemathesis over /openapi.json, in-process (ASGI): no route answers any generated request with a 5xx.

The app is the production composition (`create_app(settings)`: its own engine, the vault's DriverProvider,
the real Temporal dev server), with a tenant whose encrypted credential points at a HubSpot sandbox served
on loopback. Positive and negative examples; each request carries the credential its route needs, so the
generated bodies reach the handlers. Rate limits are off here so that volume does not turn into 429s.
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
from settings import RateLimitSettings, Settings
from tests.support.tenants import create_tenant
from vault.connections import Actor
from vault.credentials import CredentialVault

pytestmark = pytest.mark.integration

EXAMPLES = 8  # per operation and mode: enough to find crashes, few enough to keep the suite fast


@dataclass(frozen=True)
class Callers:
    agent: str
    operator: str
    api_key: str


@pytest.fixture(scope="module")
def crm() -> Iterator[tuple[ServedSandbox, hubspot_sandbox.HubSpotState]]:
    app = hubspot_sandbox.create_app()
    served = serve_in_thread(app)
    yield served, app.state.sandbox
    served.stop()


@pytest.fixture
def app_settings(settings: Settings, temporal_env: WorkflowEnvironment) -> Settings:
    address = temporal_env.client.service_client.config.target_host
    return settings.model_copy(update={
        "rate_limits": RateLimitSettings(enabled=False),
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
                   api_key=key.key)


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
    if path.startswith("/api/tools/"):
        return callers.agent
    return callers.operator


@schema.parametrize()
@hypothesis_settings(max_examples=EXAMPLES, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                            HealthCheck.filter_too_much])
def test_no_generated_request_gets_a_server_error(case: schemathesis.Case, asgi_app: Starlette) -> None:
    callers: Callers = asgi_app.state.callers
    headers = {"authorization": f"Bearer {credential_for(case.path, callers)}", "x-request-id": uuid.uuid4().hex}
    response = case.call(app=asgi_app, base_url="http://testserver", headers=headers)
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        assert response.headers["content-type"] == ["application/problem+json"], response.headers
    # Whatever the spec documents for the answer's status, the body matches (tool answers, problems, ...).
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
