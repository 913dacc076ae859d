"""Helpers the benchmarks share. Scripts put the repository root on sys.path before importing this."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from json import dumps
from pathlib import Path
from typing import Any

import httpx

from tests.support.databases import scratch_database


@contextmanager
def database_url(scratch: Path) -> Iterator[str]:
    """A fresh, unmigrated database for the run: a SQLite file, or one on CRM_BENCH_DATABASE_URL's PostgreSQL."""
    with scratch_database(os.environ.get("CRM_BENCH_DATABASE_URL"), scratch, migrate=False,
                          prefix="crm_sor_bench") as url:
        yield url


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class AsgiClient:
    """POSTs handed to the app the way an ASGI server hands them over (scope, body, collected answer).

    An HTTP server parses in C (httptools) in microseconds; httpx's ASGITransport spends about a millisecond of
    this process's CPU per call building and reading requests, which is the load generator's work, not the API's.
    """

    def __init__(self, app: Any, token: str) -> None:
        self.app, self.auth = app, f"Bearer {token}".encode()

    async def post(self, path: str, json: dict[str, Any]) -> httpx.Response:
        body = dumps(json).encode()
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"bench"), (b"authorization", self.auth),
                             (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                 "client": ("127.0.0.1", 50000), "server": ("bench", 80), "state": {}}
        pending = [{"type": "http.request", "body": body, "more_body": False}]
        answer: dict[str, Any] = {"body": b""}

        async def receive() -> dict[str, Any]:
            if pending:
                return pending.pop()
            await asyncio.Event().wait()  # no disconnect while the app works
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"], answer["headers"] = message["status"], message.get("headers", [])
            elif message["type"] == "http.response.body":
                answer["body"] += message.get("body", b"")

        await self.app(scope, receive, send)
        return httpx.Response(answer["status"], headers=answer["headers"], content=answer["body"])
