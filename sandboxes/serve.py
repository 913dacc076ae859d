"""Serve a sandbox on a loopback port (dev stack demo, integration tests).

    served = serve_in_thread(sandboxes.hubspot.create_app(), port=0)   # port 0: any free port
    ... httpx.AsyncClient(base_url=served.base_url) ...
    served.stop()

or, inside a running event loop, `async with serve_in_task(app) as base_url: ...`.
From a shell: `python -m sandboxes.serve hubspot --port 8765` prints the base URL and fresh credentials.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp

SANDBOXES = {"hubspot": "sandboxes.hubspot", "salesforce": "sandboxes.salesforce",
             "zoho": "sandboxes.zoho.app", "athenahealth": "sandboxes.athenahealth.app",
             "mindbody": "sandboxes.mindbody", "tekmetric": "sandboxes.tekmetric", "toast": "sandboxes.toast",
             # issue 13
             "odoo": "sandboxes.odoo.app", "generic_rest": "sandboxes.generic_rest",
             "custom_webhook": "sandboxes.webhook_receiver"}


def _server(app: ASGIApp, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    return uvicorn.Server(config)


def _bound_url(server: uvicorn.Server, state: Any, host: str) -> str:
    port = server.servers[0].sockets[0].getsockname()[1]
    base_url = f"http://{host}:{port}"
    if hasattr(state, "instance_url"):  # Salesforce hands its instance_url out in token responses
        state.instance_url = base_url
    return base_url


@dataclass
class ServedSandbox:
    base_url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)


def serve_in_thread(app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, timeout: float = 10.0,
                    state: Any = None) -> ServedSandbox:
    """Run `app` with uvicorn in a daemon thread; returns once the socket is listening.

    `state` is the sandbox state when `app` wraps the sandbox app (middleware); default `app.state.sandbox`.
    """
    server = _server(app, host, port)
    thread = threading.Thread(target=server.run, name="sandbox-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"sandbox server did not start on {host}:{port}")
        time.sleep(0.01)
    return ServedSandbox(_bound_url(server, state if state is not None else app.state.sandbox, host),  # type: ignore[attr-defined]
                         server, thread)


@contextlib.asynccontextmanager
async def serve_in_task(app: Starlette, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Run `app` as a task on the current event loop for the duration of the block; yields the base URL."""
    server = _server(app, host, port)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # re-raise the bind error
            raise RuntimeError(f"sandbox server did not start on {host}:{port}")
        await asyncio.sleep(0.01)
    try:
        yield _bound_url(server, app.state.sandbox, host)
    finally:
        server.should_exit = True
        await task


def create_sandbox(slug: str) -> Starlette:
    app: Starlette = importlib.import_module(SANDBOXES[slug]).create_app()
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a CRM sandbox on loopback.")
    parser.add_argument("slug", choices=sorted(SANDBOXES))
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    app = create_sandbox(args.slug)
    served = serve_in_thread(app, port=args.port)
    info: dict[str, Any] = {"base_url": served.base_url, **asdict(app.state.sandbox.tokens.credentials())}
    print(json.dumps(info), flush=True)
    try:
        served.thread.join()
    except KeyboardInterrupt:
        served.stop()


if __name__ == "__main__":
    main()
