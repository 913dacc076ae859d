"""Audit rows for credential use: who decrypted or rotated which tenant's credential, and why.

A failed audit write is logged and counted but never blocks the decrypt it describes: an agent mid-call
must not lose its CRM because the audit table is briefly unwritable. Rows carry ids and states only,
never secret material.

A row is one INSERT on an autocommit connection (`store/hot.py`): one round trip, no ORM unit of work, on the
agent's hot path.
`record_soon` starts the write without waiting for it; whoever starts one awaits it before the act it describes
takes effect (the vault's driver provider: before the first request leaves for the CRM).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from sqlalchemy import bindparam, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import telemetry
from store import hot
from store.base import utcnow
from store.models import AuditLog
from vault.connections import Actor

log = logging.getLogger(__name__)

_COLUMNS = ("at", "tenant_id", "actor_type", "actor_id", "action", "purpose", "request_id", "conversation_id",
            "details")
# Built once: the values come as parameters; inline: nothing read back.
_INSERT = insert(AuditLog).values({name: bindparam(name) for name in _COLUMNS}).inline()


class AuditTrail:
    """Writes `audit_log` rows in their own short transaction.

    Attributes:
        failures: audit writes that failed (exported by whoever scrapes metrics; tests read it).
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, timeout_seconds: float = 2.0) -> None:
        self._sessions, self._timeout = sessions, timeout_seconds
        self.failures = 0
        self._pending: set[asyncio.Task[bool]] = set()

    async def record(self, actor: Actor, tenant_id: uuid.UUID | None, action: str,
                     details: dict[str, Any] | None = None) -> bool:
        """Append one row; False (after logging and counting) when it could not be written."""
        row = {"at": utcnow(), "tenant_id": tenant_id, "actor_type": actor.type, "actor_id": actor.id[:200],
               "action": action, "purpose": actor.purpose[:200], "request_id": _clip(actor.request_id),
               "conversation_id": _clip(actor.conversation_id), "details": dict(details or {})}
        try:
            async with asyncio.timeout(self._timeout):  # not wait_for: no extra task on the hot path
                await self._write(row)
        except Exception as exc:  # any failure: the decrypt it describes still goes ahead
            self.failures += 1
            telemetry.AUDIT_WRITE_FAILURES.labels(action).inc()  # actions are our constants, a small set
            log.warning("audit write failed for %s on tenant %s: %s", action, tenant_id, type(exc).__name__)
            return False
        return True

    def record_soon(self, actor: Actor, tenant_id: uuid.UUID | None, action: str,
                    details: dict[str, Any] | None = None) -> asyncio.Task[bool]:
        """`record` started now and awaited later (it never raises: a failure is logged, counted and False).
        The task is held here until it is done, so it is never collected half-way."""
        task = asyncio.ensure_future(self.record(actor, tenant_id, action, details))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def _write(self, row: dict[str, Any]) -> None:
        await hot.execute(self._sessions.kw["bind"], _INSERT, row)


def _clip(value: str | None) -> str | None:
    return None if value is None else value[:100]
