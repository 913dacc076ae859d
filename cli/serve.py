"""`crm-sor api` and `crm-sor worker`: the two long-running processes of a deployment."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import uvicorn

from api.app import create_app
from settings import get_settings


def register(subparsers: Any) -> None:
    api = subparsers.add_parser("api", help="run the HTTP API (uvicorn)")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.set_defaults(handler=run_api)

    worker = subparsers.add_parser("worker", help="run the Temporal worker")
    worker.set_defaults(handler=run_worker)


def run_api(args: argparse.Namespace) -> int:
    settings = get_settings()
    uvicorn.run(create_app(settings), host=args.host or settings.api.host, port=args.port or settings.api.port,
                log_level="info")
    return 0


def run_worker(args: argparse.Namespace) -> int:
    import worker

    asyncio.run(worker.run_worker(get_settings()))
    return 0
