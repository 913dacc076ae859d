"""The driver provider's own clients keep their CRM connections across openings (drivers/transport.py: HostPools):
a tool call after another reuses the connection instead of a new TCP (and, on https, TLS) handshake; a connection
made for one host name never carries another's requests; the provider's aclose() closes them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from drivers.transport import HostPools, OutboundGuard
from settings import Settings
from tests.support.tenants import create_tenant
from tests.unit.vault.support import ACTOR, make_vault
from vault.provider import VaultDriverProvider


class CountingServer:
    """A keep-alive HTTP/1.1 server on loopback that answers `{"results": []}` and counts connections."""

    def __init__(self) -> None:
        self.connections = self.requests = self.closed = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> CountingServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                self.requests += 1
                body = b'{"results": []}'
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                             % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed += 1
            writer.close()


async def _until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.01)


async def test_openings_one_after_another_share_one_connection_until_the_provider_closes(
        settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
    async with CountingServer() as crm:
        local = f"http://127.0.0.1:{crm.port}"
        tenant = await create_tenant(sessions, settings={"base_url": local, "token_url": f"{local}/oauth/v3/token"})
        vault = make_vault(settings, sessions)
        await vault.store(tenant, "hubspot", {"auth": "bearer", "access_token": "tok-123456789"}, actor=ACTOR)
        provider = VaultDriverProvider(sessions, vault, outbound=OutboundGuard(allow_loopback=True),
                                       reuse_connections=True)
        try:
            for _ in range(3):  # three tool calls, each with its own driver and client
                async with provider.open(tenant, ACTOR) as driver:
                    await driver.test_connection()
            assert crm.requests >= 3 and crm.connections == 1
        finally:
            await provider.aclose()
        await _until(lambda: crm.closed == 1)  # closed with the provider, not left to the garbage collector


async def test_a_connection_made_for_one_host_name_never_carries_another_names_requests() -> None:
    async with CountingServer() as crm:
        pools = HostPools()
        try:
            for name in ("crm-a.example", "crm-b.example", "crm-a.example"):
                # As SafeTransport sends it: the checked address as the host, the name for TLS and the pool.
                request = httpx.Request("GET", f"http://127.0.0.1:{crm.port}/ping", headers={"host": name},
                                        extensions={"sni_hostname": name})
                response = await pools.handle_async_request(request)
                await response.aread()
                await response.aclose()
            assert (crm.requests, crm.connections) == (3, 2)  # a's connection served a twice, b had its own
        finally:
            await pools.aclose()
        await _until(lambda: crm.closed == 2)

