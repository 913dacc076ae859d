"""SSRF-safe outbound HTTP: the one httpx transport every driver's API and token calls go through.

Tenants hand us URLs (an Odoo instance, a generic REST base URL, a webhook endpoint, a token URL); fetched
blindly, they reach our loopback services, the private network and the cloud metadata endpoint. The
`SafeTransport` therefore, for every request (every redirect hop included):

1. resolves the host itself and refuses when ANY resolved address is loopback, private, link-local, CGNAT,
   multicast, reserved, unspecified or a metadata address (IPv4 and IPv6; IPv4-mapped, NAT64, 6to4 and
   Teredo addresses are judged by the IPv4 address they carry);
2. connects to the checked address itself (the URL's host is replaced by the IP; `Host` and TLS SNI keep the
   name, so certificates are still verified for it): there is no second lookup an attacker's DNS could answer
   differently (DNS rebinding);
3. refuses a 3xx whose `Location` points at a refused address, and never follows redirects itself (clients
   are built with `follow_redirects=False`; a hop a client does follow is checked like any request);
4. caps the response body (`max_response_bytes`) and the whole exchange (`total_timeout`).

Loopback sandboxes (tests, `crm-sor dev`) are allowed only by `OutboundGuard(allow_loopback=True)`, which the
settings turn on only in dev/test (`settings.OutboundSettings`); private ranges are never allowed.
Refusals raise `OutboundRefusedError` before any connection is opened; drivers map it to a non-retryable
`InvalidRequestError` (retrying cannot make a private address public).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = [
    "OutboundGuard",
    "OutboundRefusedError",
    "Resolver",
    "SafeTransport",
    "blocked_reason",
    "config_urls",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

# Cloud metadata services: AWS/GCP/Azure/OpenStack (169.254.169.254), AWS IPv6 (fd00:ec2::254), Alibaba
# (100.100.100.200), Oracle (192.0.0.192). Named so a refusal says what it protected.
_METADATA = frozenset(ipaddress.ip_address(a) for a in
                      ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "192.0.0.192"))
_CGNAT = ipaddress.ip_network("100.64.0.0/10")  # RFC 6598 shared space: is_private is False for it
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class OutboundRefusedError(Exception):
    """An outbound request was refused before any connection; `reason` says why (no customer content)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"outbound request refused: {reason}")
        self.reason = reason


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4, Teredo client), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return ip.teredo[1] if ip.teredo is not None else None


def blocked_reason(ip: IPAddress, *, allow_loopback: bool = False) -> str | None:
    """Why `ip` must not be contacted, or None when it is a public unicast address (or allowed loopback)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = blocked_reason(inner, allow_loopback=allow_loopback)
            return f"{reason} (embedded in {ip})" if reason else None
    if ip in _METADATA:
        return f"{ip} is a cloud metadata address"
    if ip.is_loopback:
        return None if allow_loopback else f"{ip} is a loopback address"
    if ip.is_unspecified:
        return f"{ip} is the unspecified address"
    if ip.is_link_local:
        return f"{ip} is a link-local address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return f"{ip} is a carrier-grade NAT (shared) address"
    if ip.is_multicast:
        return f"{ip} is a multicast address"
    if ip.is_reserved:
        return f"{ip} is a reserved address"
    if ip.is_private:
        return f"{ip} is a private address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host` (async: getaddrinfo runs in the loop's executor)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class OutboundGuard:
    """The outbound policy: what may be contacted, and the caps on what comes back.

    Attributes:
        allow_loopback: let loopback addresses through (tests and `crm-sor dev` only; see settings).
        resolver: host name -> addresses; tests inject one (e.g. a name resolving to 127.0.0.1).
        max_response_bytes: larger bodies are refused (Content-Length up front, else while streaming).
        total_timeout: seconds for one whole exchange, body included.
    """

    allow_loopback: bool = False
    resolver: Resolver = system_resolver
    max_response_bytes: int = 10 * 1024 * 1024
    total_timeout: float = 30.0
    schemes: frozenset[str] = field(default=frozenset({"http", "https"}))
    # Resolutions are reused this long: getaddrinfo costs ~1 ms a request otherwise. What is reused is a
    # checked answer, and the connection still goes to it, so a DNS change in the window changes nothing.
    cache_seconds: float = 30.0
    _resolved: dict[tuple[str, int], tuple[float, list[str]]] = field(default_factory=dict, compare=False,
                                                                      repr=False)

    async def pin(self, url: httpx.URL | str) -> str:
        """Resolve `url`'s host and return the address to connect to; OutboundRefusedError when refused."""
        url = url if isinstance(url, httpx.URL) else httpx.URL(url)  # parsing again costs more than the check
        if url.scheme not in self.schemes:
            raise OutboundRefusedError(f"scheme {url.scheme or '(none)'!r} is not allowed")
        host = url.host
        if not host:
            raise OutboundRefusedError("the URL has no host")
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [literal]
        else:
            resolved = await self._resolve(host, url.port or (443 if url.scheme == "https" else 80))
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolved]
            if not addresses:
                raise OutboundRefusedError(f"host {host} does not resolve")
        # Any refused address refuses the host: a name with one public and one private record would let a
        # later lookup (ours or a library's) pick the private one.
        for ip in addresses:
            reason = blocked_reason(ip, allow_loopback=self.allow_loopback)
            if reason:
                shown = reason if literal is not None else f"{host} resolves to {reason}"
                raise OutboundRefusedError(shown)
        return str(addresses[0])

    async def _resolve(self, host: str, port: int) -> list[str]:
        now = time.monotonic()
        cached = self._resolved.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            addresses = await self.resolver(host, port)
        except OSError:
            raise OutboundRefusedError(f"host {host} does not resolve") from None
        if len(self._resolved) > 1024:  # bounded: tenants' hosts, not the internet
            self._resolved.clear()
        self._resolved[(host, port)] = (now + self.cache_seconds, addresses)
        return addresses

    async def check_urls(self, urls: Iterable[str]) -> None:
        """Connect-time check of tenant-configured URLs: OutboundRefusedError naming the first refused one."""
        for url in urls:
            try:
                await self.pin(url)
            except OutboundRefusedError as exc:
                raise OutboundRefusedError(f"{_origin(url)}: {exc.reason}") from None


def _origin(url: str) -> str:
    """Scheme, host and port of a URL, for messages (paths and queries may carry keys)."""
    parsed = httpx.URL(url)
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


def config_urls(base_url: str | None, token_url: str | None, config: Mapping[str, Any]) -> list[str]:
    """Every URL a tenant's configuration makes us call: the driver's base and token URLs, plus any setting
    named `*url` (`instance_url`, `endpoint_url`, `openapi_url`, …)."""
    urls = [u for u in (base_url, token_url) if u]
    urls += [str(v) for k, v in config.items() if k.endswith("url") and isinstance(v, str) and v]
    return list(dict.fromkeys(urls))


class _CappedStream(httpx.AsyncByteStream):
    """A response body that stops at the byte cap and at the exchange's deadline."""

    def __init__(self, inner: httpx.AsyncByteStream, limit: int, deadline: float) -> None:
        self._inner, self._limit, self._deadline = inner, limit, deadline

    async def __aiter__(self) -> AsyncIterator[bytes]:
        received = 0
        iterator = self._inner.__aiter__()
        while True:
            try:
                async with asyncio.timeout(max(self._deadline - time.monotonic(), 0.0)):
                    chunk = await iterator.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise httpx.ReadTimeout("response body exceeded the outbound time cap") from None
            received += len(chunk)
            if received > self._limit:
                raise OutboundRefusedError(f"response body exceeds {self._limit} bytes")
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's TLS context for CRM calls, as httpx builds by default (verified, the CA bundle, SSL_CERT_*):
    built once, because building one loads the CA bundle (~35 ms of CPU) and every driver opening gets a client."""
    return httpx.create_ssl_context()


class HostPools(httpx.AsyncBaseTransport):
    """Connections kept across driver clients: one pool per (scheme, host name, checked address, port).

    A driver client lives for one tool call or activity; with a pool of its own, every call to a CRM paid a new
    TCP and TLS handshake (two round trips to the provider) before its request. These pools outlive the clients,
    so the next call to that CRM reuses the connection. Keyed by host name as well as address: a connection made
    for one name, its certificate checked for that name, never carries a request for another name that happens to
    share the address. Its owner (the driver provider) closes it; the clients sending through it do not.
    """

    # Providers keep idle connections open for a minute or more; 30 s spans the gaps between a tenant's calls.
    LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=30.0)

    def __init__(self) -> None:
        self._pools: dict[tuple[str, str, str, int | None], httpx.AsyncHTTPTransport] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        key = (url.scheme, str(request.extensions.get("sni_hostname") or url.host), url.host, url.port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = httpx.AsyncHTTPTransport(retries=0, verify=tls_context(), limits=self.LIMITS)
        return await pool.handle_async_request(request)

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


class SafeTransport(httpx.AsyncBaseTransport):
    """Resolve, check, pin, then send through `inner` (default: a pooled `httpx.AsyncHTTPTransport`).

    `inner` receives the request with the checked IP as its host; tests pass an in-process transport there
    to observe exactly what would have been sent. `close_inner=False`: `inner` is shared (`HostPools`) and its
    owner closes it.
    """

    def __init__(self, guard: OutboundGuard, inner: httpx.AsyncBaseTransport | None = None, *,
                 close_inner: bool = True) -> None:
        self.guard = guard
        self._inner = inner or httpx.AsyncHTTPTransport(retries=0, verify=tls_context())
        self._close_inner = close_inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        guard = self.guard
        address = await guard.pin(request.url)
        pinned = httpx.Request(request.method, request.url.copy_with(host=address), headers=request.headers,
                               stream=request.stream,
                               extensions={**request.extensions, "sni_hostname": request.url.host})
        deadline = time.monotonic() + guard.total_timeout
        try:
            async with asyncio.timeout(guard.total_timeout):
                response = await self._inner.handle_async_request(pinned)
        except TimeoutError:
            raise httpx.ReadTimeout("no response within the outbound time cap", request=request) from None
        if response.status_code in _REDIRECTS and "location" in response.headers:
            try:
                await guard.pin(request.url.join(response.headers["location"]))
            except OutboundRefusedError as exc:
                await response.aclose()
                raise OutboundRefusedError(f"redirect to {exc.reason}") from None
        length = response.headers.get("content-length")
        if length and length.isdigit() and int(length) > guard.max_response_bytes:
            await response.aclose()
            raise OutboundRefusedError(f"response body exceeds {guard.max_response_bytes} bytes")
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)  # an async transport's responses always are
        return httpx.Response(response.status_code, headers=response.headers, request=request,
                              stream=_CappedStream(stream, guard.max_response_bytes, deadline),
                              extensions=response.extensions)

    async def aclose(self) -> None:
        if self._close_inner:
            await self._inner.aclose()
