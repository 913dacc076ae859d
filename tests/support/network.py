"""Loopback failure modes as real sockets: a port nobody listens on, and a server that accepts and never answers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


def closed_port() -> int:
    """A loopback port nobody listens on once the probe socket is closed: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SilentServer:
    """Accepts TCP connections and never writes a byte (a wedged Redis, a hung upstream)."""

    port: int
    accepted: int = 0
    _held: list[asyncio.StreamWriter] = field(default_factory=list)


@asynccontextmanager
async def silent_server() -> AsyncIterator[SilentServer]:
    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.accepted += 1
        silent._held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    silent = SilentServer(port=server.sockets[0].getsockname()[1])
    try:
        yield silent
    finally:
        for writer in silent._held:
            writer.close()
        server.close()
        await server.wait_closed()
