"""The SSRF guard: refused destinations never see a request; allowed ones get the checked address pinned.

Only loopback traffic is possible on this machine, so nothing here opens a socket to a refused address: the
guard's `inner` transport is an in-process recorder, and the tests assert it saw 0 requests. Names resolve
through an injected resolver (a name resolving to loopback, a rebinding name), never through real DNS.
"""

from __future__ import annotations

import ipaddress

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from drivers import errors
from drivers.base import CrmObject
from drivers.hubspot import HubSpotDriver
from drivers.transport import OutboundGuard, OutboundRefusedError, SafeTransport, blocked_reason, config_urls

PUBLIC = "93.184.216.34"  # a globally routable address; the recorder stands in for it (no packet leaves)
NAMES = {"localhost": ["127.0.0.1", "::1"], "rebind.example": [PUBLIC, "10.0.0.7"], "crm.example": [PUBLIC],
         "api.hubapi.com": [PUBLIC], "metadata.example": ["169.254.169.254"], "v6.example": ["::ffff:10.1.1.1"]}


async def resolver(host: str, port: int) -> list[str]:
    if host not in NAMES:
        raise OSError("unknown host")
    return NAMES[host]


class Recorder(httpx.AsyncBaseTransport):
    """What would have been sent: every request that got past the guard, answered by an in-process app."""

    def __init__(self) -> None:
        self.seen: list[httpx.Request] = []
        self._app = httpx.ASGITransport(app=_app())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return await self._app.handle_async_request(request)


def _app() -> Starlette:
    async def ok(request: Request) -> Response:
        return JSONResponse({"host": request.headers["host"]})

    async def to_metadata(request: Request) -> Response:
        return RedirectResponse("http://169.254.169.254/latest/meta-data/", 302)

    async def to_public(request: Request) -> Response:
        return RedirectResponse("/ok", 302)

    async def big(request: Request) -> Response:
        return Response(b"x" * 4096)

    async def streamed(request: Request) -> Response:
        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(8):
                yield b"y" * 512

        return StreamingResponse(chunks())

    return Starlette(routes=[Route("/ok", ok), Route("/redirect", to_metadata), Route("/hop", to_public),
                             Route("/big", big), Route("/streamed", streamed)])


def guarded(**kw: object) -> tuple[httpx.AsyncClient, Recorder]:
    recorder = Recorder()
    guard = OutboundGuard(resolver=resolver, **kw)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=SafeTransport(guard, recorder)), recorder


REFUSED = [
    ("http://127.0.0.1/", "loopback"),
    ("http://127.8.9.10:8080/", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://10.0.0.1/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://172.31.255.254/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://169.254.1.1/", "link-local"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://100.127.255.254/", "carrier-grade NAT"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[::ffff:a9fe:a9fe]/", "metadata"),
    ("http://[64:ff9b::a00:1]/", "private"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fc00::1]/", "private"),
    ("http://224.0.0.1/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://localhost/", "localhost resolves to 127.0.0.1 is a loopback"),
    ("http://rebind.example/", "private"),
    ("http://metadata.example/", "metadata"),
    ("http://v6.example/", "private"),
    ("http://nowhere.example/", "does not resolve"),
    ("ftp://crm.example/", "scheme"),
    ("file:///etc/passwd", "scheme"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
async def test_refused_destinations_see_zero_requests(url: str, reason: str) -> None:
    client, recorder = guarded()
    async with client:
        with pytest.raises(OutboundRefusedError) as refused:
            await client.get(url)
    assert reason in refused.value.reason
    assert recorder.seen == []


@pytest.mark.parametrize(("url", "reason"), REFUSED)
async def test_connect_time_check_names_the_refused_url(url: str, reason: str) -> None:
    with pytest.raises(OutboundRefusedError) as refused:
        await OutboundGuard(resolver=resolver).check_urls(["https://crm.example/api", url])
    assert reason in refused.value.reason
    assert "/latest/meta-data" not in refused.value.reason  # the origin, not the path (paths may hold keys)


async def test_a_public_host_is_pinned_with_its_name_kept_for_host_and_sni() -> None:
    client, recorder = guarded()
    async with client:
        response = await client.get("https://crm.example/ok")
    assert response.status_code == 200 and response.json() == {"host": "crm.example"}
    (sent,) = recorder.seen
    assert sent.url.host == PUBLIC and sent.url.scheme == "https"
    assert sent.headers["host"] == "crm.example" and sent.extensions["sni_hostname"] == "crm.example"


async def test_a_redirect_to_a_refused_address_is_refused_before_the_hop() -> None:
    client, recorder = guarded()
    async with client:
        with pytest.raises(OutboundRefusedError, match="redirect to 169.254.169.254 is a cloud metadata"):
            await client.get("https://crm.example/redirect", follow_redirects=True)
    assert [r.url.path for r in recorder.seen] == ["/redirect"]  # nothing reached the metadata address


async def test_redirects_are_not_followed_unless_asked_and_each_hop_is_checked() -> None:
    client, recorder = guarded()
    async with client:
        answer = await client.get("https://crm.example/hop")
        assert answer.status_code == 302 and len(recorder.seen) == 1
        followed = await client.get("https://crm.example/hop", follow_redirects=True)
    assert followed.json() == {"host": "crm.example"}
    assert [r.url.host for r in recorder.seen] == [PUBLIC] * 3


@pytest.mark.parametrize("path", ["/big", "/streamed"])
async def test_response_size_is_capped(path: str) -> None:
    client, _ = guarded(max_response_bytes=1024)
    async with client:
        with pytest.raises(OutboundRefusedError, match="exceeds 1024 bytes"):
            await client.get(f"https://crm.example{path}")
        assert (await client.get("https://crm.example/ok")).status_code == 200


async def test_the_loopback_allowance_lets_loopback_through_and_nothing_else() -> None:
    client, recorder = guarded(allow_loopback=True)
    async with client:
        assert (await client.get("http://localhost/ok")).status_code == 200
        assert (await client.get("http://[::ffff:127.0.0.1]/ok")).status_code == 200
        for url in ("http://10.0.0.1/", "http://169.254.169.254/", "http://100.64.0.1/", "http://192.168.0.1/"):
            with pytest.raises(OutboundRefusedError):
                await client.get(url)
    assert len(recorder.seen) == 2


def test_blocked_reason_judges_v6_forms_by_the_v4_address_they_carry() -> None:
    assert blocked_reason(ipaddress.ip_address("2002:0a00:0001::1")) is not None  # 6to4 of 10.0.0.1
    assert blocked_reason(ipaddress.ip_address("::ffff:93.184.216.34")) is None
    assert blocked_reason(ipaddress.ip_address("2606:4700:4700::1111")) is None
    assert blocked_reason(ipaddress.ip_address("8.8.8.8")) is None


def test_config_urls_collects_every_configured_url() -> None:
    config = {"instance_url": "https://a.example", "endpoint_url": "https://b.example", "name": "https://no"}
    assert config_urls("https://base", None, config) == ["https://base", "https://a.example", "https://b.example"]


async def test_a_driver_maps_a_refusal_to_a_non_retryable_invalid_request() -> None:
    client, recorder = guarded()
    client.base_url = httpx.URL("http://rebind.example")
    async with client:
        with pytest.raises(errors.InvalidRequestError) as refused:
            await HubSpotDriver(client).get_record(CrmObject.DEAL, "1")
    assert refused.value.provider_code == "outbound_refused" and not refused.value.retryable
    assert "10.0.0.7 is a private address" in str(refused.value) and recorder.seen == []


async def test_a_checked_resolution_is_reused_for_a_short_while_only() -> None:
    asked: list[str] = []

    async def counting(host: str, port: int) -> list[str]:
        asked.append(host)
        return [PUBLIC]

    guard = OutboundGuard(resolver=counting, cache_seconds=30.0)
    assert await guard.pin("https://crm.example/a") == await guard.pin("https://crm.example/b") == PUBLIC
    assert asked == ["crm.example"]
    expired = OutboundGuard(resolver=counting, cache_seconds=0.0)
    await expired.pin("https://crm.example/a")
    await expired.pin("https://crm.example/a")
    assert asked == ["crm.example"] * 3
