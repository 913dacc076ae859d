"""A lifecycle worker in a process of its own, on sandboxes at loopback URLs: something a test can SIGKILL.

    python -m tests.support.worker_process --temporal HOST:PORT --task-queue Q --database-url URL \\
        --sandbox hubspot=http://127.0.0.1:PORT [--kill-after "POST /crm/v3/objects/contacts/batch/upsert"]

With `--kill-after` it kills itself (SIGKILL) right after the CRM answered that call: the crash lands exactly
between the CRM's create and our idempotency-ledger write (the record exists at the provider, the ledger still
says `pending`), and Temporal only learns of it when the attempt's heartbeat stops.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

import httpx
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from store.session import create_engine, session_factory
from tests.support.lifecycle import lifecycle_worker
from tests.support.sandbox_provider import SandboxDriverProvider


class KillAfter(httpx.AsyncBaseTransport):
    """Passes requests through; SIGKILLs this process once `method path` got a 2xx answer."""

    def __init__(self, inner: httpx.AsyncBaseTransport, method: str, path: str) -> None:
        self.inner, self.method, self.path = inner, method, path

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == self.method and request.url.path == self.path and response.status_code < 300:
            os.kill(os.getpid(), signal.SIGKILL)
        return response


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--temporal", required=True)
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--sandbox", required=True, help="slug=base_url")
    parser.add_argument("--kill-after", help='e.g. "POST /crm/v3/objects/contacts"')
    args = parser.parse_args()
    slug, _, url = args.sandbox.partition("=")
    method, _, path = (args.kill_after or "").partition(" ")
    engine = create_engine(args.database_url)
    sessions = session_factory(engine)
    wrap = (lambda inner: KillAfter(inner, method, path)) if args.kill_after else None
    drivers = SandboxDriverProvider(sessions, urls={slug: url}, wrap=wrap)
    client = await Client.connect(args.temporal, data_converter=pydantic_data_converter)
    async with lifecycle_worker(client, sessions, drivers, args.task_queue):
        print("worker ready", flush=True)
        await asyncio.Event().wait()  # until the kill


if __name__ == "__main__":
    asyncio.run(main())
