"""Operator connect flows through the app, against the sandboxes' authorize pages and token endpoints."""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.app import create_app
from api.auth import mint_token
from api.context import AppContext
from api.temporal import TemporalGateway
from sandboxes.common import SandboxState
from settings import OAuthClientSettings, Settings, TemporalSettings
from store.base import utcnow
from store.models import OAuthState, Tenant
from tests.unit.vault.support import SYSTEM, make_tenant, make_vault, sandbox
from vault.provider import VaultDriverProvider


@dataclass
class Stack:
    api: httpx.AsyncClient
    crm: httpx.AsyncClient  # the operator's browser, talking to the provider's pages
    state: SandboxState
    drivers: VaultDriverProvider
    token_forms: list[dict[str, list[str]]]
    token_urls: list[str]
    settings: Settings


@asynccontextmanager
async def make_stack(slug: str, settings: Settings, engine: AsyncEngine,
                     sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[Stack]:
    _, state, transport = sandbox(slug)
    clients = {slug: OAuthClientSettings(client_id=state.tokens.client_id, client_secret=state.tokens.client_secret)}
    settings = settings.model_copy(update={"oauth_clients": clients, "public_base_url": "https://crm-sor.test"})
    forms: list[dict[str, list[str]]] = []
    urls: list[str] = []

    async def capture(req: httpx.Request) -> None:
        if req.url.path.endswith("/token"):
            forms.append(parse_qs(req.content.decode()))
            urls.append(str(req.url))

    def factory(base_url: str, auth: httpx.Auth | None) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=base_url, auth=auth, transport=transport, event_hooks={"request": [capture]})

    drivers = VaultDriverProvider(sessions, make_vault(settings, sessions), client_factory=factory,
                                  oauth_clients=clients)
    ctx = AppContext(settings=settings, engine=engine, sessions=sessions,
                     temporal=TemporalGateway(TemporalSettings(address="127.0.0.1:1")), extras={"drivers": drivers})
    app = create_app(context=ctx)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://crm-sor.test") as api, \
            httpx.AsyncClient(transport=transport) as crm:
        yield Stack(api, crm, state, drivers, forms, urls, settings)


@pytest.fixture(params=["hubspot", "salesforce"])
async def stack(request: pytest.FixtureRequest, settings: Settings, engine: AsyncEngine,
                sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[Stack]:
    async with make_stack(request.param, settings, engine, sessions) as built:
        yield built


@pytest.fixture
async def salesforce(settings: Settings, engine: AsyncEngine,
                     sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[Stack]:
    async with make_stack("salesforce", settings, engine, sessions) as built:
        yield built


@pytest.fixture
async def hubspot(settings: Settings, engine: AsyncEngine,
                  sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[Stack]:
    async with make_stack("hubspot", settings, engine, sessions) as built:
        yield built


def operator(settings: Settings, tenant_id: uuid.UUID | None = None) -> dict[str, str]:
    token = mint_token(settings, subject="op-1", role="operator", tenant_id=tenant_id)
    return {"authorization": f"Bearer {token}"}


async def start(stack: Stack, tenant: uuid.UUID, body: dict[str, Any] | None = None) -> dict[str, list[str]]:
    response = await stack.api.post(f"/api/operator/tenants/{tenant}/connect/oauth/start", json=body or {},
                                    headers=operator(stack.settings))
    assert response.status_code == 200, response.text
    url = response.json()["authorize_url"]
    consent = await stack.crm.get(url)  # the sandbox consents at once and redirects back to us
    assert consent.status_code == 302
    location = urlsplit(consent.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == "https://crm-sor.test/api/connect/oauth/callback"
    return {"authorize": [url], **parse_qs(location.query)}


async def callback(stack: Stack, query: dict[str, str]) -> httpx.Response:
    return await stack.api.get("/api/connect/oauth/callback", params=query)


async def tenant_row(sessions: async_sessionmaker[AsyncSession], tenant: uuid.UUID) -> Tenant:
    async with sessions() as session:
        row = await session.get(Tenant, tenant)
        assert row is not None
        return row


async def test_oauth_connect_stores_tokens_encrypted_and_activates_after_a_passing_test(
        stack: Stack, sessions: async_sessionmaker[AsyncSession]) -> None:
    slug = stack.state.tokens.prefix
    tenant = await make_tenant(sessions, slug, status="pending")
    got = await start(stack, tenant)
    authorize = parse_qs(urlsplit(got["authorize"][0]).query)
    assert authorize["client_id"] == [stack.state.tokens.client_id] and authorize["response_type"] == ["code"]

    response = await callback(stack, {"code": got["code"][0], "state": got["state"][0]})

    assert response.status_code == 200, response.text
    assert response.json() == {"tenant_id": str(tenant), "provider": slug, "status": "active", "reason": None}
    assert (await tenant_row(sessions, tenant)).status == "active"
    credential = await stack.drivers.vault.load(tenant, SYSTEM)
    assert credential.secret["auth"] == "oauth2" and credential.secret["refresh_token"].startswith(f"{slug}-rt-")
    assert stack.token_forms[0]["grant_type"] == ["authorization_code"]
    async with sessions() as session:
        rows = (await session.execute(select(OAuthState).where(OAuthState.tenant_id == tenant))).scalars().all()
    assert len(rows) == 1 and rows[0].used_at is not None and rows[0].code_verifier is None
    assert rows[0].state_hash == hashlib.sha256(got["state"][0].encode()).hexdigest()  # only the hash is kept


async def test_a_replayed_or_unknown_or_expired_state_is_rejected(
        stack: Stack, sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = await make_tenant(sessions, stack.state.tokens.prefix, status="pending")
    got = await start(stack, tenant)
    query = {"code": got["code"][0], "state": got["state"][0]}
    assert (await callback(stack, query)).status_code == 200
    replay = await callback(stack, query)
    assert replay.status_code == 400 and replay.json()["type"].endswith("/state-already-used")
    forged = await callback(stack, {"code": got["code"][0], "state": "forged"})
    assert forged.status_code == 400 and forged.json()["type"].endswith("/invalid-state")
    assert (await callback(stack, {"code": "x"})).json()["type"].endswith("/invalid-callback")

    late = await start(stack, tenant)
    async with sessions() as session, session.begin():
        await session.execute(update(OAuthState).where(OAuthState.state_hash == hashlib.sha256(
            late["state"][0].encode()).hexdigest()).values(created_at=utcnow() - timedelta(minutes=11)))
    expired = await callback(stack, {"code": late["code"][0], "state": late["state"][0]})
    assert expired.status_code == 400 and expired.json()["type"].endswith("/state-expired")


async def test_a_refused_code_and_a_denied_consent_are_400s_that_consume_the_state(
        stack: Stack, sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = await make_tenant(sessions, stack.state.tokens.prefix, status="pending")
    got = await start(stack, tenant)
    refused = await callback(stack, {"code": "not-a-code", "state": got["state"][0]})
    assert refused.status_code == 400 and refused.json()["type"].endswith("/code-exchange-failed")
    assert refused.json()["detail"] == "invalid_grant"
    again = await callback(stack, {"code": got["code"][0], "state": got["state"][0]})
    assert again.json()["type"].endswith("/state-already-used")
    denied_flow = await start(stack, tenant)
    denied = await callback(stack, {"error": "access_denied", "state": denied_flow["state"][0]})
    assert denied.status_code == 400 and denied.json()["detail"] == "access_denied"
    assert (await tenant_row(sessions, tenant)).status == "pending"


async def test_salesforce_sandbox_orgs_use_test_login_host_and_pkce(
        salesforce: Stack, sessions: async_sessionmaker[AsyncSession]) -> None:
    stack = salesforce
    tenant = await make_tenant(sessions, "salesforce", status="pending")
    got = await start(stack, tenant, {"sandbox": True})
    authorize = urlsplit(got["authorize"][0])
    params = parse_qs(authorize.query)
    assert authorize.netloc == "test.salesforce.com" and params["code_challenge_method"] == ["S256"]

    response = await callback(stack, {"code": got["code"][0], "state": got["state"][0]})

    assert response.json()["status"] == "active"
    assert stack.token_urls == ["https://test.salesforce.com/services/oauth2/token"]
    verifier = stack.token_forms[0]["code_verifier"][0]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert params["code_challenge"] == [challenge]
    credential = await stack.drivers.vault.load(tenant, SYSTEM)
    assert credential.secret["instance_url"] == "https://sandbox-org.my.salesforce.com"
    assert (await tenant_row(sessions, tenant)).settings["is_sandbox"] is True


async def test_hubspot_authorize_url_asks_for_crm_scopes_without_pkce(
        hubspot: Stack, sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = await make_tenant(sessions, "hubspot", status="pending")
    got = await start(hubspot, tenant)
    authorize = urlsplit(got["authorize"][0])
    params = parse_qs(authorize.query)
    assert authorize.netloc == "app.hubspot.com" and "code_challenge" not in params
    assert "crm.objects.contacts.write" in params["scope"][0].split(" ")
    assert params["redirect_uri"] == ["https://crm-sor.test/api/connect/oauth/callback"]


async def test_form_credentials_are_validated_stored_and_tested(
        hubspot: Stack, sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = await make_tenant(sessions, "hubspot", status="pending")
    url = f"/api/operator/tenants/{tenant}/connect/credentials"
    headers = operator(hubspot.settings, tenant)
    for bad in ({}, {"access_token": "short"}, {"access_token": "pat-na1-0123456789", "typo": 1}):
        response = await hubspot.api.post(url, json=bad, headers=headers)
        assert response.status_code == 422 and "pat-na1" not in response.text
    assert (await hubspot.api.post(url, json=["x"], headers=headers)).status_code == 400
    assert (await hubspot.api.post(url, content=b"{", headers=headers)).status_code == 400

    good = await hubspot.api.post(url, json={"access_token": hubspot.state.tokens.issue_access()}, headers=headers)

    assert good.json()["status"] == "active"
    assert (await hubspot.drivers.vault.load(tenant, SYSTEM)).secret["auth"] == "bearer"


async def test_a_failed_connection_test_leaves_the_tenant_pending_with_the_reason(
        hubspot: Stack, sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = await make_tenant(sessions, "hubspot", status="pending")
    response = await hubspot.api.post(f"/api/operator/tenants/{tenant}/connect/credentials",
                                      json={"access_token": "pat-na1-revoked-token"},
                                      headers=operator(hubspot.settings))
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "pending" and "auth_error" in body["reason"] and "401" in body["reason"]
    row = await tenant_row(sessions, tenant)
    assert row.status == "pending" and row.status_reason == body["reason"]
    status = await hubspot.api.get(f"/api/operator/tenants/{tenant}/connection", headers=operator(hubspot.settings))
    assert status.json()["status"] == "pending" and status.json()["credential"]["scheme"] == "env"
    assert "revoked-token" not in status.text


async def test_retest_after_the_provider_expired_the_token_refreshes_and_stays_active(
        hubspot: Stack, sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = await make_tenant(sessions, "hubspot", status="pending")
    got = await start(hubspot, tenant)
    assert (await callback(hubspot, {"code": got["code"][0], "state": got["state"][0]})).json()["status"] == "active"
    hubspot.state.tokens.expire_all()
    retest = await hubspot.api.post(f"/api/operator/tenants/{tenant}/connect/test", headers=operator(hubspot.settings))
    assert retest.json()["status"] == "active" and hubspot.state.calls["POST /oauth/v3/token"] == 2


async def test_routes_need_an_operator_of_that_tenant(hubspot: Stack,
                                                      sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = await make_tenant(sessions, "hubspot", status="pending")
    url = f"/api/operator/tenants/{tenant}/connect/oauth/start"
    assert (await hubspot.api.post(url)).status_code == 401
    agent = mint_token(hubspot.settings, subject="a", role="agent", tenant_id=tenant)
    assert (await hubspot.api.post(url, headers={"authorization": f"Bearer {agent}"})).status_code == 403
    other = await hubspot.api.post(url, headers=operator(hubspot.settings, uuid.uuid4()))
    assert other.status_code == 404
    unknown = await hubspot.api.post(f"/api/operator/tenants/{uuid.uuid4()}/connect/oauth/start",
                                     headers=operator(hubspot.settings))
    assert unknown.status_code == 404 and unknown.json()["type"].endswith("/not-found")
    bad_body = await hubspot.api.post(url, json={"sandbox": "yes"}, headers=operator(hubspot.settings))
    assert bad_body.status_code == 422


async def test_oauth_and_form_routes_refuse_the_wrong_kind_of_provider(
        salesforce: Stack, sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = await make_tenant(sessions, "salesforce", status="pending")
    form = await salesforce.api.post(f"/api/operator/tenants/{tenant}/connect/credentials",
                                     json={"access_token": "whatever-token"}, headers=operator(salesforce.settings))
    assert form.status_code == 400 and form.json()["type"].endswith("/form-not-supported")
    disabled = await make_tenant(sessions, "salesforce", status="disabled")
    refused = await salesforce.api.post(f"/api/operator/tenants/{disabled}/connect/oauth/start",
                                        headers=operator(salesforce.settings))
    assert refused.status_code == 409


async def test_an_unconfigured_oauth_app_is_a_503_problem(settings: Settings, engine: AsyncEngine,
                                                          sessions: async_sessionmaker[AsyncSession]) -> None:
    tenant = await make_tenant(sessions, "hubspot", status="pending")
    ctx = AppContext(settings=settings, engine=engine, sessions=sessions,  # settings without any OAuth app
                     temporal=TemporalGateway(TemporalSettings(address="127.0.0.1:1")))
    transport = httpx.ASGITransport(app=create_app(context=ctx))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        response = await api.post(f"/api/operator/tenants/{tenant}/connect/oauth/start", headers=operator(settings))
    assert response.status_code == 503 and response.json()["type"].endswith("/oauth-not-configured")
    assert "CRM_OAUTH_CLIENTS__HUBSPOT__CLIENT_ID" in response.json()["detail"]


# ----- issue 11: Zoho's data centres through the OAuth flow, athenahealth through the form ---------------


@pytest.mark.parametrize(("dc", "accounts", "api"), [("eu", "accounts.zoho.eu", "www.zohoapis.eu"),
                                                      ("sa", "accounts.zoho.sa", "www.zohoapis.sa")])
async def test_zoho_connects_on_the_data_centre_the_redirect_names(
        dc: str, accounts: str, api: str, settings: Settings, engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async with make_stack("zoho", settings, engine, sessions) as stack:
        stack.state.user_dc = dc  # type: ignore[attr-defined]
        tenant = await make_tenant(sessions, "zoho", status="pending")
        got = await start(stack, tenant)
        assert urlsplit(got["authorize"][0]).netloc == "accounts.zoho.com" and got["location"] == [dc]
        query = {k: v[0] for k, v in got.items() if k != "authorize"}
        response = await callback(stack, query)
        assert response.status_code == 200 and response.json()["status"] == "active", response.text
        assert stack.token_urls == [f"https://{accounts}/oauth/v2/token"]
        row = await tenant_row(sessions, tenant)
        assert row.settings["accounts_server"] == f"https://{accounts}" and row.settings["api_domain"] == f"https://{api}"
        assert stack.state.calls["GET /crm/v8/users"] == 1  # test_connection ran on that DC's API host


async def test_zoho_callback_refuses_an_untrusted_accounts_server(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
    async with make_stack("zoho", settings, engine, sessions) as stack:
        tenant = await make_tenant(sessions, "zoho", status="pending")
        got = await start(stack, tenant)
        query = {k: v[0] for k, v in got.items() if k != "authorize"} | {"accounts-server": "https://evil.example"}
        response = await callback(stack, query)
        assert response.status_code == 400 and response.json()["type"].endswith("/invalid-callback")
        assert stack.token_urls == []  # neither the code nor our client secret left for that host


async def test_athenahealth_connects_with_the_form(settings: Settings, engine: AsyncEngine,
                                                   sessions: async_sessionmaker[AsyncSession]) -> None:
    async with make_stack("athenahealth", settings, engine, sessions) as stack:
        tenant = await make_tenant(sessions, "athenahealth", status="pending")
        url = f"/api/operator/tenants/{tenant}/connect/credentials"
        tokens = stack.state.tokens
        body = {"client_id": tokens.client_id, "client_secret": tokens.client_secret, "practice_id": "195900",
                "environment": "preview"}
        wrong = await stack.api.post(url, json=body | {"practice_id": "1"}, headers=operator(stack.settings))
        assert wrong.json()["status"] == "pending" and "not_found" in wrong.json()["reason"]
        good = await stack.api.post(url, json=body, headers=operator(stack.settings))
        assert good.json()["status"] == "active", good.text
        row = await tenant_row(sessions, tenant)
        assert row.settings["practice_id"] == "195900" and row.settings["environment"] == "preview"
        assert stack.token_urls[-1] == "https://api.preview.platform.athenahealth.com/oauth2/v1/token"
        assert "client_secret" not in good.text and tokens.client_secret not in good.text
