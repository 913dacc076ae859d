"""Connecting a tenant's CRM: OAuth (start → provider consent → callback) or posted form credentials, then a
`test_connection()` before the tenant becomes `active`; a failed test leaves it `pending` with the reason.

The callback is reached by the operator's browser redirected from the provider, so it carries no operator
token: the single-use, short-lived `state` (stored only as a hash, bound to the tenant and provider) is
what authenticates it. The start and the callback write audit rows sharing the state digest's prefix.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from drivers.errors import DriverError, InvalidRequestError
from drivers.installer import install
from drivers.registry import get_driver_class
from settings import OAuthClientSettings
from store import installs
from store.base import utcnow
from store.models import OAuthState, Tenant
from vault.connections import Actor
from vault.credentials import Credential
from vault.oauth import (
    STATE_TTL,
    authorize_url,
    exchange_code,
    new_code_verifier,
    new_state,
    state_hash,
)
from vault.provider import TenantConfig, VaultDriverProvider

CALLBACK_PATH = "/api/connect/oauth/callback"
_PROVIDER_ERROR = re.compile(r"^[a-z_]{1,64}$")


class ConnectError(Exception):
    """A connect request that cannot proceed; the route turns it into a problem answer."""

    def __init__(self, status: int, slug: str, title: str, detail: str | None = None) -> None:
        super().__init__(title)
        self.status, self.slug, self.title, self.detail = status, slug, title, detail


@dataclass(frozen=True)
class ConnectOutcome:
    tenant_id: uuid.UUID
    provider: str
    status: str  # active | pending
    reason: str | None
    generated_secret: str | None = None  # shown once: a secret the form generated (a webhook signing secret)


class Connector:
    """The connect flows on top of the vault-backed driver provider."""

    def __init__(self, drivers: VaultDriverProvider, sessions: async_sessionmaker[AsyncSession], *,
                 oauth_clients: Mapping[str, OAuthClientSettings], public_base_url: str) -> None:
        self._drivers, self._sessions, self._clients = drivers, sessions, oauth_clients
        self.redirect_uri = public_base_url.rstrip("/") + CALLBACK_PATH

    async def start_oauth(self, tenant_id: uuid.UUID, actor: Actor, *, sandbox: bool | None = None) -> str:
        tenant = await self._connectable(tenant_id)
        driver = get_driver_class(tenant.provider)
        meta = driver.oauth
        if meta is None:
            forms = "post credentials instead" if driver.credential_form else "it has no connect flow yet"
            raise ConnectError(400, "not-oauth", f"{tenant.provider} does not connect through OAuth; {forms}.")
        client = self._client(tenant.provider)
        config = {**tenant.settings, **driver.oauth_start_settings(sandbox=sandbox)}  # e.g. a sandbox-org login host
        state, verifier = new_state(), new_code_verifier() if meta.pkce else None
        async with self._sessions() as session, session.begin():
            await session.execute(delete(OAuthState).where(OAuthState.created_at < utcnow() - timedelta(days=1)))
            session.add(OAuthState(state_hash=state_hash(state), tenant_id=tenant_id, provider=tenant.provider,
                                   code_verifier=verifier, redirect_uri=self.redirect_uri))
            if config != tenant.settings:
                await session.execute(update(Tenant).where(Tenant.id == tenant_id).values(settings=config))
        self._drivers.forget_tenant(tenant_id)
        await self._drivers.vault.audit.record(actor, tenant_id, "connect.oauth_start",
                                               {"provider": tenant.provider, "state": state_hash(state)[:12]})
        return authorize_url(meta, driver.oauth_authorize_url(config), client_id=client.client_id,
                             redirect_uri=self.redirect_uri, state=state,
                             code_verifier=verifier)

    async def finish_oauth(self, *, state: str | None, code: str | None, error: str | None,
                           extra: Mapping[str, str] | None = None) -> ConnectOutcome:
        """Complete a connect from the provider's redirect; `extra` is the rest of its query (the driver's
        `oauth_callback_settings` reads what it needs, e.g. the account's data centre)."""
        if not state:
            raise ConnectError(400, "invalid-callback", "The callback has no state parameter.")
        digest = state_hash(state)
        pending = await self._claim_state(digest)
        actor = Actor(type="platform_operator", id="oauth-callback", purpose="connect CRM",
                      request_id=f"oauth-state:{digest[:12]}")
        if error:
            shown = error if _PROVIDER_ERROR.match(error) else "error"
            raise ConnectError(400, "authorization-denied", "The provider did not grant access.", shown)
        if not code:
            raise ConnectError(400, "invalid-callback", "The callback has no authorization code.")
        tenant = await self._connectable(pending.tenant_id)
        if tenant.provider != pending.provider:
            raise ConnectError(409, "provider-changed", "The tenant's provider changed during the connect flow.")
        client = self._client(tenant.provider)
        driver = get_driver_class(tenant.provider)
        try:
            from_redirect = driver.oauth_callback_settings(extra or {})
        except DriverError as exc:
            raise ConnectError(400, "invalid-callback", "The callback names a host we do not trust.",
                               exc.provider_code or exc.code) from None
        if from_redirect:
            tenant = await self._merge_settings(tenant, from_redirect)
        token_url = driver.oauth_token_url(tenant.settings)
        if not token_url:
            raise ConnectError(400, "not-oauth", f"{tenant.provider} has no OAuth token endpoint.")
        try:
            async with self._drivers.token_http() as http:
                tokens = await exchange_code(http, provider=tenant.provider, token_url=token_url,
                                             client_id=client.client_id,
                                             client_secret=client.client_secret.get_secret_value(),
                                             code=code, redirect_uri=pending.redirect_uri,
                                             code_verifier=pending.code_verifier)
        except DriverError as exc:
            status, slug = (502, "provider-unavailable") if exc.retryable else (400, "code-exchange-failed")
            raise ConnectError(status, slug, "The provider did not exchange the authorization code.",
                               exc.provider_code or exc.code) from None
        if not tokens.refresh_token:
            raise ConnectError(400, "no-refresh-token", "The provider issued no refresh token.",
                               "Grant offline access (the provider's offline or refresh scope) and connect again.")
        try:
            from_tokens = driver.settings_from_tokens(tokens)
        except DriverError as exc:
            raise ConnectError(400, "code-exchange-failed", "The token response names a host we do not trust.",
                               exc.provider_code or exc.code) from None
        if from_tokens:
            tenant = await self._merge_settings(tenant, from_tokens)
        secret: dict[str, Any] = {"auth": "oauth2", "access_token": tokens.access_token,
                                  "refresh_token": tokens.refresh_token}
        if tokens.instance_url:  # the API host the token response named, kept with the tokens it came with
            secret["instance_url"] = tokens.instance_url
        expires_at = None if tokens.expires_in is None else utcnow() + timedelta(seconds=tokens.expires_in)
        stored = await self._drivers.vault.store(tenant.tenant_id, tenant.provider, secret, actor=actor,
                                                 expires_at=expires_at)
        return await self._test_and_set_status(tenant, stored, actor)

    async def connect_form(self, tenant_id: uuid.UUID, body: Any, actor: Actor) -> ConnectOutcome:
        tenant = await self._connectable(tenant_id)
        driver = get_driver_class(tenant.provider)
        form = driver.credential_form
        if form is None:
            how = "use the OAuth connect flow" if driver.oauth else "it has no connect flow yet"
            raise ConnectError(400, "form-not-supported", f"{tenant.provider} does not take posted credentials; {how}.")
        if not isinstance(body, dict):
            raise ConnectError(400, "invalid-body", "The body must be a JSON object.")
        validated = form.model_validate(body)  # ValidationError → 422 through the app's handler
        try:  # a URL the outbound guard refuses (loopback, private, metadata…) is refused before anything is kept
            await self._drivers.check_outbound(driver, {**tenant.settings, **validated.settings()})
        except InvalidRequestError as exc:
            raise ConnectError(422, "unsafe-url", "A configured URL may not be called.", exc.message) from None
        if validated.settings():
            tenant = await self._merge_settings(tenant, validated.settings())
        stored = await self._drivers.vault.store(tenant_id, tenant.provider, validated.secret(), actor=actor)
        outcome = await self._test_and_set_status(tenant, stored, actor)
        return dataclasses.replace(outcome, generated_secret=validated.reveal())

    async def _merge_settings(self, tenant: TenantConfig, extra: dict[str, Any]) -> TenantConfig:
        """Keep a form's non-secret settings (practice id, environment…) on the tenant, next to its others."""
        merged = {**tenant.settings, **extra}
        async with self._sessions() as session, session.begin():
            await session.execute(update(Tenant).where(Tenant.id == tenant.tenant_id).values(settings=merged))
        self._drivers.forget_tenant(tenant.tenant_id)
        return TenantConfig(tenant.tenant_id, tenant.provider, tenant.status, merged)

    async def retest(self, tenant_id: uuid.UUID, actor: Actor) -> ConnectOutcome:
        tenant = await self._connectable(tenant_id)
        try:
            credential = await self._drivers.vault.load(tenant_id, actor, provider=tenant.provider)
        except LookupError:
            raise ConnectError(409, "not-connected", "The tenant has no stored credentials yet.") from None
        return await self._test_and_set_status(tenant, credential, actor)

    async def _test_and_set_status(self, tenant: TenantConfig, credential: Credential, actor: Actor
                                   ) -> ConnectOutcome:
        report = None
        try:
            async with self._drivers.open_with(tenant, credential, actor) as driver:
                check = await driver.test_connection()
                report = await install(driver) if check.ok else None  # our fields for exactly-once create
            ok, reason = check.ok, check.reason
        except DriverError as exc:  # e.g. needs reconnect, or no usable secret in the blob
            ok, reason = False, str(exc)
        async with self._sessions() as session, session.begin():
            state = await installs.record(session, tenant.tenant_id, report.as_dict()) if report else None
            status, reason = installs.gated_status(ok, reason, state)
            await session.execute(update(Tenant).where(Tenant.id == tenant.tenant_id)
                                  .values(status=status, status_reason=reason))
        self._drivers.forget_tenant(tenant.tenant_id)
        await self._drivers.vault.audit.record(actor, tenant.tenant_id, "connect.tested",
                                               {"provider": tenant.provider, "status": status})
        return ConnectOutcome(tenant.tenant_id, tenant.provider, status, reason)  # degraded: active with a reason

    async def _connectable(self, tenant_id: uuid.UUID) -> TenantConfig:
        try:
            tenant = await self._drivers.tenant(tenant_id)
        except LookupError:
            raise ConnectError(404, "not-found", "No such tenant.") from None
        if tenant.status == "disabled":
            raise ConnectError(409, "tenant-disabled", "The tenant is disabled; enable it before connecting.")
        return tenant

    def _client(self, provider: str) -> OAuthClientSettings:
        client = self._clients.get(provider)
        if client is None:
            raise ConnectError(503, "oauth-not-configured", f"No OAuth app is configured for {provider}.",
                               f"Set CRM_OAUTH_CLIENTS__{provider.upper()}__CLIENT_ID and __CLIENT_SECRET.")
        return client

    async def _claim_state(self, digest: str) -> OAuthState:
        """Mark the state used (once, atomically) and return what it was bound to."""
        now = utcnow()
        async with self._sessions() as session, session.begin():
            query = select(OAuthState).where(OAuthState.state_hash == digest)
            row = (await session.execute(query)).scalar_one_or_none()
            if row is None:
                raise ConnectError(400, "invalid-state", "The state is unknown: start the connect flow again.")
            if row.used_at is not None:
                raise ConnectError(400, "state-already-used", "This authorization was already completed.")
            if row.created_at < now - STATE_TTL:
                raise ConnectError(400, "state-expired", "The connect flow took too long: start it again.")
            claimed = await session.execute(
                update(OAuthState).where(OAuthState.state_hash == digest, OAuthState.used_at.is_(None))
                .values(used_at=now, code_verifier=None).execution_options(synchronize_session=False))
            if getattr(claimed, "rowcount", 0) != 1:
                raise ConnectError(400, "state-already-used", "This authorization was already completed.")
            session.expunge(row)
        return row

