"""ASGI middleware: oversized bodies get the 413 problem, and every answer is delivered intact.

Two things go wrong with big uploads on a plain Starlette app behind uvicorn:

- A body whose `Content-Length` exceeds the limit would still reach the routes (auth, JSON parsing) before
  read_json refuses it. Here it is refused at once, without reading it into memory.
- When a route answers before reading the whole body (a 413, a 401, a GET with a body), uvicorn closes the
  connection with request bytes still unread: a client that is still sending (no `Expect: 100-continue`)
  gets a connection reset instead of the answer. So before the answer's last chunk goes out, the unread rest
  of the body is received and discarded, up to `drain_limit` bytes (beyond that the connection is dropped,
  as a client sending that much garbage deserves).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import TYPE_BASE

# What we are willing to read and discard to deliver an answer cleanly (a 20 MB upload is drained in ms on
# a LAN; a multi-GB one is cut off).
DRAIN_LIMIT = 64 * 1024 * 1024


class BodyLimit:
    """Wraps the app; `max_bytes` is the largest declared body a route may see."""

    def __init__(self, app: ASGIApp, max_bytes: int, drain_limit: int = DRAIN_LIMIT) -> None:
        self.app, self.max_bytes, self.drain_limit = app, max_bytes, drain_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = _Body(receive, self.drain_limit)

        async def send_after_drain(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                await state.drain()
            await send(message)

        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _too_large(scope, self.max_bytes, send_after_drain)
            return
        await self.app(scope, state.receive, send_after_drain)


class _Body:
    """The request's receive channel, remembering whether the body has been read to its end."""

    def __init__(self, receive: Receive, drain_limit: int) -> None:
        self._receive, self._limit = receive, drain_limit
        self.done = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.done = True
        return message

    async def drain(self) -> None:
        discarded = 0
        while not self.done and discarded <= self._limit:
            message = await self.receive()
            discarded += len(message.get("body", b""))


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


async def _too_large(scope: Scope, max_bytes: int, send: Send) -> None:
    body: dict[str, Any] = {"type": TYPE_BASE + "body-too-large", "title": f"The body exceeds {max_bytes} bytes.",
                            "status": 413, "instance": scope.get("path", "")}
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/problem+json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})
