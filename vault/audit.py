"""Audit rows for credential use: who decrypted or rotated which tenant's credential, and why.

A failed audit write is logged and counted but never blocks the decrypt it describes: an agent mid-call
must not lose its CRM because the audit table is briefly unwritable. Rows carry ids and states only,
never secret material.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import telemetry
from store.models import AuditLog
from vault.connections import Actor

log = logging.getLogger(__name__)


class AuditTrail:
    """Writes `audit_log` rows in their own short transaction.

    Attributes:
        failures: audit writes that failed (exported by whoever scrapes metrics; tests read it).
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, timeout_seconds: float = 2.0) -> None:
        self._sessions, self._timeout = sessions, timeout_seconds
        self.failures = 0

    async def record(self, actor: Actor, tenant_id: uuid.UUID | None, action: str,
                     details: dict[str, Any] | None = None) -> bool:
        """Append one row; False (after logging and counting) when it could not be written."""
        row = AuditLog(tenant_id=tenant_id, actor_type=actor.type, actor_id=actor.id[:200], action=action,
                       purpose=actor.purpose[:200], request_id=_clip(actor.request_id),
                       conversation_id=_clip(actor.conversation_id), details=dict(details or {}))
        try:
            await asyncio.wait_for(self._write(row), timeout=self._timeout)
        except Exception as exc:  # any failure: the decrypt it describes still goes ahead
            self.failures += 1
            telemetry.AUDIT_WRITE_FAILURES.labels(action).inc()  # actions are our constants, a small set
            log.warning("audit write failed for %s on tenant %s: %s", action, tenant_id, type(exc).__name__)
            return False
        return True

    async def _write(self, row: AuditLog) -> None:
        async with self._sessions() as session, session.begin():
            session.add(row)


def _clip(value: str | None) -> str | None:
    return None if value is None else value[:100]
