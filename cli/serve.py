"""`crm-sor api` and `crm-sor worker`: the two long-running processes of a deployment."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the server stacks are imported by the commands that run them (fast CLI start-up)
    from settings import Settings


def register(subparsers: Any) -> None:
    api = subparsers.add_parser("api", help="run the HTTP API (uvicorn)")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.set_defaults(handler=run_api)

    worker = subparsers.add_parser("worker", help="run the Temporal worker")
    worker.set_defaults(handler=run_worker)


def check_credential_key(settings: Settings) -> None:
    """Stop at startup, with the reason, when credentials could not be decrypted (vault issue), or when a
    deployment (env other than dev/test) still runs on the dev placeholder secrets: anyone who read this
    repository could then mint agent/operator tokens or reverse the erasure subject hashes."""
    from cli.main import CliError
    from settings import DEV_ENVS, outbound_problem
    from vault.credentials import env_key_for
    from vault.crypto import CredentialKeyError

    try:
        env_key_for(settings, kms_configured=bool(settings.kms.key_id))
    except CredentialKeyError as exc:
        raise CliError(str(exc)) from None
    placeholders = settings.default_secrets()
    if placeholders and settings.env not in DEV_ENVS:
        raise CliError(f"{' and '.join(placeholders)} still hold the dev placeholder; set your own secret "
                       f"(32+ random bytes) when CRM_ENV={settings.env!r} (only dev/test may use it)")
    problem = outbound_problem(settings)  # a dev/test SSRF allowance must never reach production
    if problem:
        raise CliError(problem)


def run_api(args: argparse.Namespace) -> int:
    import uvicorn

    from api import access_log
    from api.app import create_app
    from settings import get_settings

    settings = get_settings()
    check_credential_key(settings)
    uvicorn.run(create_app(settings), host=args.host or settings.api.host, port=args.port or settings.api.port,
                log_level="info", log_config=access_log.uvicorn_log_config())
    return 0


def run_worker(args: argparse.Namespace) -> int:
    import worker
    from settings import get_settings
    from telemetry import worker_telemetry

    settings = get_settings()
    check_credential_key(settings)
    with worker_telemetry(settings.metrics):  # /metrics listeners, when their ports are set
        asyncio.run(worker.run_worker(settings))
    return 0
