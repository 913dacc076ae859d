"""Vault activities: the credential backfill that re-wraps env-key rows under KMS, one row at a time.

Each row is re-wrapped in its own locked, compare-and-swapped transaction, so readers see either the old
env row or the new kms row — both decrypt — and a crash between rows loses nothing. The activity heartbeats
its cursor after every row; a retried attempt resumes from the last heartbeat instead of rescanning.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.contained import contained
from activities.vault_types import RewrapBatchInput, RewrapBatchResult
from vault.connections import Actor
from vault.credentials import CredentialVault
from vault.crypto import DecryptError

BACKFILL_ACTOR = Actor(type="system", id="rewrap-credentials", purpose="re-wrap env-key credentials under KMS")


class VaultActivities:
    """Activities over the credential vault; built once per worker process in `worker.py`."""

    def __init__(self, vault: CredentialVault) -> None:
        self._vault = vault

    def all(self) -> list[Callable[..., Any]]:
        return [self.rewrap_credentials_batch]

    @activity.defn
    @contained
    async def rewrap_credentials_batch(self, input: RewrapBatchInput) -> RewrapBatchResult:
        if self._vault.sealer.kms is None:
            raise ApplicationError("this worker has no KMS key configured (CRM_KMS__KEY_ID)", type="KmsNotConfigured",
                                   non_retryable=True)
        details = activity.info().heartbeat_details
        cursor = str(details[0]) if details else input.after
        row_ids = await self._vault.env_row_ids(uuid.UUID(cursor) if cursor else None, input.batch_size)
        rewrapped, unreadable = 0, []
        for row_id in row_ids:
            try:
                if await self._vault.rewrap_to_kms(row_id, BACKFILL_ACTOR):
                    rewrapped += 1
            except DecryptError:
                unreadable.append(str(row_id))  # written under another env key: retrying cannot help
            cursor = str(row_id)
            activity.heartbeat(cursor)
        more = len(row_ids) == input.batch_size
        return RewrapBatchResult(next_cursor=cursor if more else None, scanned=len(row_ids), rewrapped=rewrapped,
                                 unreadable=unreadable)
