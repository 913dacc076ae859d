"""Connect time: a tenant whose configured URLs the SSRF guard refuses stays pending with the reason, and
`crm-sor api` / `worker` refuse to start with the loopback allowance outside dev/test."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cli.main import CliError
from cli.serve import check_credential_key
from drivers.transport import OutboundGuard
from settings import OutboundSettings, Settings, outbound_problem
from tests.unit.drivers.test_transport import REFUSED, Recorder, resolver
from tests.unit.vault.support import SYSTEM, make_tenant, make_vault
from vault.connect import ConnectError, Connector
from vault.provider import VaultDriverProvider

URL_SETTINGS = ["base_url", "token_url", "instance_url"]


@pytest.mark.parametrize("setting", URL_SETTINGS)
@pytest.mark.parametrize(("url", "reason"), [r for r in REFUSED if r[0].startswith("http")])
async def test_connect_refuses_a_tenant_url_with_the_reason_and_no_request(
        settings: Settings, sessions: async_sessionmaker[AsyncSession], setting: str, url: str, reason: str) -> None:
    recorder = Recorder()
    drivers = VaultDriverProvider(sessions, make_vault(settings, sessions), transport=recorder,
                                  outbound=OutboundGuard(resolver=resolver))
    connector = Connector(drivers, sessions, oauth_clients={}, public_base_url="https://crm-sor.test")
    tenant = await make_tenant(sessions, "hubspot", status="pending", config={setting: url})
    with pytest.raises(ConnectError) as refused:  # a 422 naming the reason, before anything is stored or sent
        await connector.connect_form(tenant, {"access_token": "pat-na1-0123456789"}, SYSTEM)
    assert refused.value.status == 422 and refused.value.slug == "unsafe-url"
    assert refused.value.detail is not None and reason in refused.value.detail and "pat-na1" not in refused.value.detail
    assert recorder.seen == []
    with pytest.raises(LookupError):
        await drivers.vault.load(tenant, SYSTEM, provider="hubspot")


def test_the_loopback_allowance_is_refused_outside_dev_and_test(settings: Settings) -> None:
    allowed = OutboundSettings(allow_loopback=True)
    for env in ("dev", "test"):
        assert outbound_problem(settings.model_copy(update={"env": env, "outbound": allowed})) is None
    own_secrets = {"jwt_secret": SecretStr("x" * 40), "subject_hash_key": SecretStr("y" * 40)}
    production = settings.model_copy(update={"env": "production", "outbound": allowed, **own_secrets})
    assert "ALLOW_LOOPBACK" in (outbound_problem(production) or "")
    with pytest.raises(CliError, match="loopback destinations are for dev, test only"):
        check_credential_key(production)
    off = settings.model_copy(update={"env": "production", "outbound": OutboundSettings(), **own_secrets})
    check_credential_key(off)  # allowance off (the default): starts


class RedirectingCrm(httpx.AsyncBaseTransport):
    """A public-looking CRM whose every answer redirects to the metadata service (what it would reach next)."""

    def __init__(self) -> None:
        self.seen: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return httpx.Response(302, headers={"location": "http://169.254.169.254/latest/meta-data/"})


async def test_connect_refuses_a_crm_that_redirects_to_a_refused_address(
        settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    crm = RedirectingCrm()
    drivers = VaultDriverProvider(sessions, make_vault(settings, sessions), transport=crm,
                                  outbound=OutboundGuard(resolver=resolver))
    connector = Connector(drivers, sessions, oauth_clients={}, public_base_url="https://crm-sor.test")
    tenant = await make_tenant(sessions, "hubspot", status="pending", config={"base_url": "https://crm.example"})
    outcome = await connector.connect_form(tenant, {"access_token": "pat-na1-0123456789"}, SYSTEM)
    assert outcome.status == "pending" and outcome.reason is not None
    assert "redirect to 169.254.169.254 is a cloud metadata address" in outcome.reason
    assert [r.url.host for r in crm.seen] == ["93.184.216.34"]  # the checked address only; never the metadata one
