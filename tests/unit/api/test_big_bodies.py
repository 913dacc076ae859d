"""A 20 MB body sent without `Expect: 100-continue` gets the 413 problem over a real uvicorn socket, not a reset."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import uvicorn

from api.app import create_app
from api.context import AppContext
from settings import Settings
from tests.unit.api.support import agent_headers

TWENTY_MB = 20 * 1024 * 1024


async def _send(port: int, head: bytes, body_chunks: int, chunk: bytes, tail: bytes = b"") -> bytes:
    """Write the request as a plain client would (all of it, not waiting for an interim answer), then read."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    for _ in range(body_chunks):
        writer.write(chunk)
        await writer.drain()  # raises ConnectionResetError if the server hung up on us
    writer.write(tail)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=30)
    writer.close()
    return answer


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_twenty_megabyte_body_gets_the_413_problem(
        ctx: AppContext, settings: Settings, tenant: uuid.UUID, framing: str) -> None:
    server = uvicorn.Server(uvicorn.Config(create_app(context=ctx), host="127.0.0.1", port=0, lifespan="off",
                                           log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    auth = agent_headers(settings, tenant)["authorization"]
    piece = b"x" * (1024 * 1024)
    try:
        if framing == "content-length":
            head = (f"POST /api/agent/conversations HTTP/1.1\r\nHost: api\r\nAuthorization: {auth}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {TWENTY_MB}\r\n"
                    "Connection: close\r\n\r\n").encode()
            answer = await _send(port, head, 20, piece)
        else:  # no declared length: the limit is found while reading
            head = (f"POST /api/agent/conversations HTTP/1.1\r\nHost: api\r\nAuthorization: {auth}\r\n"
                    "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                    "Connection: close\r\n\r\n").encode()
            chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
            answer = await _send(port, head, 20, chunk, tail=b"0\r\n\r\n")
    finally:
        server.should_exit = True
        await task
    head_part, _, body = answer.partition(b"\r\n\r\n")
    assert head_part.startswith(b"HTTP/1.1 413"), answer[:200]
    problem = json.loads(body)  # a problem answer carries its Content-Length
    assert problem["status"] == 413 and problem["type"].endswith("body-too-large")
