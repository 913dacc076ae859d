"""`crm-sor credentials rewrap`: start (or attach to) the env → KMS backfill workflow and say where to watch it."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING, Any

# Temporal and the workflows are imported by the command, not at start-up (admin CLI start-up stays < 1 s).
if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowHandle

    from settings import Settings
    from workflows.rewrap_credentials import RewrapCredentialsWorkflow
    from workflows.rewrap_types import RewrapCredentialsResult


def register(subparsers: Any) -> None:
    credentials = subparsers.add_parser("credentials", help="tenant credential maintenance")
    actions = credentials.add_subparsers(dest="credentials_command", required=True, metavar="ACTION")
    rewrap = actions.add_parser("rewrap", help="re-wrap env-key credential rows under KMS (a Temporal workflow)")
    rewrap.add_argument("--batch-size", type=int, default=50, help="rows per activity (default 50)")
    rewrap.add_argument("--wait", action="store_true", help="wait for the backfill to finish and print totals")
    rewrap.set_defaults(handler=run_rewrap)


async def start_rewrap(client: Client, settings: Settings, batch_size: int
                       ) -> WorkflowHandle[RewrapCredentialsWorkflow, RewrapCredentialsResult]:
    """Start the backfill; while one runs, a second start attaches to it instead of racing it."""
    from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy

    from workflows import search_attributes
    from workflows.rewrap_credentials import WORKFLOW_ID, RewrapCredentialsWorkflow
    from workflows.rewrap_types import RewrapCredentialsInput

    return await client.start_workflow(
        RewrapCredentialsWorkflow.run,
        RewrapCredentialsInput(batch_size=batch_size),
        id=WORKFLOW_ID,
        task_queue=settings.temporal.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes([SearchAttributePair(search_attributes.TABLE, "tenant_credentials")]),
    )


def run_rewrap(args: argparse.Namespace) -> int:
    from cli.main import CliError
    from settings import get_settings

    if not 1 <= args.batch_size <= 1000:
        raise CliError("--batch-size must be between 1 and 1000")
    settings = get_settings()
    if not settings.kms.key_id:
        raise CliError("KMS is not configured: set CRM_KMS__KEY_ID (and the worker's AWS credentials) first")
    try:
        return asyncio.run(_rewrap(settings, args.batch_size, args.wait))
    except (ConnectionError, OSError, RuntimeError) as exc:
        raise CliError(f"cannot reach Temporal at {settings.temporal.address}: {type(exc).__name__}") from None


async def _rewrap(settings: Settings, batch_size: int, wait: bool) -> int:
    from api.temporal import connect_temporal
    from workflows.rewrap_credentials import WORKFLOW_ID

    client = await asyncio.wait_for(connect_temporal(settings.temporal), timeout=10)
    handle = await start_rewrap(client, settings, batch_size)
    ui = (f"http://localhost:{settings.temporal.ui_port}/namespaces/{settings.temporal.namespace}"
          f"/workflows/{WORKFLOW_ID}")
    print(f"credential re-wrap running as workflow {WORKFLOW_ID} (run {handle.result_run_id})\n  watch it: {ui}")
    if not wait:
        return 0
    result = await handle.result()
    print(f"re-wrapped {result.rewrapped} of {result.scanned} env rows under KMS")
    for row_id in result.unreadable:
        print(f"  left on env (the current env key cannot open it): credential row {row_id}")
    return 1 if result.unreadable else 0
