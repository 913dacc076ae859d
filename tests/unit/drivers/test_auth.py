"""Auth flows: static keys, OAuth2 refresh-once on 401, single-flight token source, refresh failures."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from drivers import errors
from drivers.auth import ApiKeyAuth, BearerAuth, OAuth2Auth, OAuthTokenSource
from drivers.base import CrmObject
from tests.unit.drivers.harness import hubspot as hubspot_harness


def _echo(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"auth": request.headers.get("authorization"), "url": str(request.url)})


async def _send(auth: httpx.Auth) -> dict[str, str]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(_echo), auth=auth) as client:
        result: dict[str, str] = (await client.get("https://crm.example/x?a=1")).json()
    return result


async def test_static_auths() -> None:
    assert (await _send(BearerAuth("t0k")))["auth"] == "Bearer t0k"
    assert (await _send(ApiKeyAuth("k3y", prefix="Token")))["auth"] == "Token k3y"
    assert (await _send(ApiKeyAuth("k3y", query_param="api_key")))["url"] == "https://crm.example/x?a=1&api_key=k3y"
    assert (await _send(OAuth2Auth(_StaticSource(), scheme="Zoho-oauthtoken")))["auth"] == "Zoho-oauthtoken a1"


class _StaticSource:
    def __init__(self) -> None:
        self.refreshes: list[str] = []

    async def current(self) -> str:
        return "a1"

    async def refreshed(self, stale: str) -> str:
        self.refreshes.append(stale)
        return "a2"


async def test_a_second_401_is_returned_not_refreshed_again() -> None:
    source = _StaticSource()
    seen: list[str | None] = []

    def always_401(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(401, json={"category": "INVALID_AUTHENTICATION"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(always_401), auth=OAuth2Auth(source)) as client:
        response = await client.get("https://crm.example/x")
    assert response.status_code == 401
    assert source.refreshes == ["a1"] and seen == ["Bearer a1", "Bearer a2"]


def test_oauth_needs_an_async_client() -> None:
    with (
        httpx.Client(transport=httpx.MockTransport(_echo), auth=OAuth2Auth(_StaticSource())) as client,
        pytest.raises(RuntimeError, match="AsyncClient"),
    ):
        client.get("https://crm.example/x")


async def test_concurrent_401s_share_one_refresh() -> None:
    async with hubspot_harness() as h:
        deal = h.seed(CrmObject.DEAL, h.create_fields(CrmObject.DEAL, 1))
        h.state.tokens.expire_all()
        results = await asyncio.gather(*(h.driver.get_record(CrmObject.DEAL, deal) for _ in range(5)))
        assert {r.external_id for r in results} == {deal}
        assert h.token_calls == 1 and h.source.refresh_count == 1


def _source(handler: httpx.MockTransport | httpx.AsyncBaseTransport, **kwargs: object) -> OAuthTokenSource:
    return OAuthTokenSource(
        token_url="https://auth.example/token",
        client_id="id",
        client_secret="secret",
        refresh_token="r1",
        provider="acme",
        http=httpx.AsyncClient(transport=handler),
        **kwargs,  # type: ignore[arg-type]
    )


async def test_first_use_without_an_access_token_refreshes() -> None:
    forms: list[bytes] = []

    def token(request: httpx.Request) -> httpx.Response:
        forms.append(request.content)
        return httpx.Response(200, json={"access_token": "fresh", "token_type": "Bearer"})

    source = _source(httpx.MockTransport(token))
    assert await source.current() == "fresh" and await source.current() == "fresh"
    assert forms == [b"grant_type=refresh_token&refresh_token=r1&client_id=id&client_secret=secret"]
    assert source.refresh_token == "r1"  # no rotation offered: keep the old one


@pytest.mark.parametrize(
    ("response", "error", "code"),
    [
        (
            httpx.Response(400, json={"error": "invalid_grant", "error_description": "expired"}),
            errors.AuthError,
            "invalid_grant",
        ),
        (httpx.Response(401, json={"error": "invalid_client"}), errors.AuthError, "invalid_client"),
        (httpx.Response(200, json={"token_type": "Bearer"}), errors.AuthError, None),
        (httpx.Response(200, text="<html>login</html>"), errors.AuthError, None),
        (httpx.Response(503, text="down"), errors.UnavailableError, None),
    ],
)
async def test_refresh_failures(response: httpx.Response, error: type[errors.DriverError], code: str | None) -> None:
    source = _source(httpx.MockTransport(lambda request: response))
    with pytest.raises(error) as raised:
        await source.refreshed("stale")
    assert raised.value.provider == "acme" and raised.value.provider_code == code
    assert "secret" not in str(raised.value) and "r1" not in str(raised.value)


async def test_unreachable_token_endpoint_is_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(errors.UnavailableError) as raised:
        await _source(httpx.MockTransport(refuse)).refreshed("stale")
    assert raised.value.retryable
