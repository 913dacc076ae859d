"""`crm-sor api` and `crm-sor worker`: the two long-running processes of a deployment."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import uvicorn

from api.app import create_app
from settings import Settings, get_settings, outbound_problem
from vault.credentials import env_key_for
from vault.crypto import CredentialKeyError


def register(subparsers: Any) -> None:
    api = subparsers.add_parser("api", help="run the HTTP API (uvicorn)")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.set_defaults(handler=run_api)

    worker = subparsers.add_parser("worker", help="run the Temporal worker")
    worker.set_defaults(handler=run_worker)


def check_credential_key(settings: Settings) -> None:
    """Stop at startup, with the reason, when credentials could not be decrypted (vault issue)."""
    from cli.main import CliError

    try:
        env_key_for(settings, kms_configured=bool(settings.kms.key_id))
    except CredentialKeyError as exc:
        raise CliError(str(exc)) from None
    problem = outbound_problem(settings)  # a dev/test SSRF allowance must never reach production
    if problem:
        raise CliError(problem)


def run_api(args: argparse.Namespace) -> int:
    settings = get_settings()
    check_credential_key(settings)
    uvicorn.run(create_app(settings), host=args.host or settings.api.host, port=args.port or settings.api.port,
                log_level="info")
    return 0


def run_worker(args: argparse.Namespace) -> int:
    import worker

    settings = get_settings()
    check_credential_key(settings)
    asyncio.run(worker.run_worker(settings))
    return 0
