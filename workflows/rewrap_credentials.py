"""RewrapCredentialsWorkflow: re-wrap every env-key credential row under KMS, batch by batch, visibly.

Started by `crm-sor credentials rewrap` with the fixed id `vault:rewrap-credentials` (a second start attaches
to the running one). Zero downtime: rows are converted one at a time and both schemes stay readable, so
nothing waits on the backfill. Resumable and idempotent: converted rows drop out of the env scan, and the
activity heartbeats its cursor. The `progress` query and each batch's result show it in the Temporal UI.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.vault import VaultActivities
    from activities.vault_types import RewrapBatchInput
    from workflows.rewrap_types import RewrapCredentialsInput, RewrapCredentialsResult

WORKFLOW_ID = "vault:rewrap-credentials"

# KMS or the database being away is waited out; a worker without a KMS key is a configuration error.
BATCH_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1),
                          non_retryable_error_types=["KmsNotConfigured"])


@workflow.defn
class RewrapCredentialsWorkflow:
    def __init__(self) -> None:
        self._progress = RewrapCredentialsResult(scanned=0, rewrapped=0, unreadable=[])

    @workflow.query
    def progress(self) -> RewrapCredentialsResult:
        return self._progress

    @workflow.run
    async def run(self, input: RewrapCredentialsInput) -> RewrapCredentialsResult:
        cursor = input.cursor
        scanned, rewrapped, unreadable = input.scanned_so_far, input.rewrapped_so_far, list(input.unreadable_so_far)
        while True:
            batch = await workflow.execute_activity_method(
                VaultActivities.rewrap_credentials_batch,
                RewrapBatchInput(after=cursor, batch_size=input.batch_size),
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=timedelta(minutes=1),
                retry_policy=BATCH_RETRY,
            )
            scanned, rewrapped = scanned + batch.scanned, rewrapped + batch.rewrapped
            unreadable += batch.unreadable
            self._progress = RewrapCredentialsResult(scanned=scanned, rewrapped=rewrapped, unreadable=unreadable)
            if batch.next_cursor is None:
                return self._progress
            cursor = batch.next_cursor
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(input.model_copy(update={
                    "cursor": cursor, "scanned_so_far": scanned, "rewrapped_so_far": rewrapped,
                    "unreadable_so_far": unreadable}))
