"""Change capture for providers without webhooks (Odoo, Tekmetric, generic REST): poll `list_recent`.

Works over any driver: the tenant's cursor (`crm_poll_cursors`) is where the last poll left off; each changed
record becomes the same normalized event a webhook would (`source="poll"`), its event id
`poll:{object}:{external id}:{modified at}` — so a record seen again at the same version (the provider's `>=`
filter repeats the boundary) dedupes, and a later change is a new event. A first poll only sets the cursor:
enabling polling must not call every lead of the past.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.crm_write import as_application_error
from activities.outbound_types import PollInput, PollResult
from drivers.base import CrmObject, Record
from drivers.errors import DriverError
from drivers.webhooks import parse_time
from store import outbound
from store.base import utcnow
from store.outbound_models import PollCursor
from vault.connections import Actor, DriverProvider

CREATED_FIELDS = ("createdate", "CreatedDate", "create_date", "created_at", "createdAt")


def _kind(record: Record, since: datetime) -> str:
    for name in CREATED_FIELDS:
        value = record.fields.get(name)
        if value:
            try:
                return "created" if parse_time(value) >= since else "updated"
            except ValueError:
                continue
    return "updated"


class CrmPollActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], drivers: DriverProvider) -> None:
        self._sessions, self._drivers = sessions, drivers

    def all(self) -> list[Callable[..., Any]]:
        return [self.crm_poll_recent]

    @activity.defn
    async def crm_poll_recent(self, input: PollInput) -> PollResult:
        async with self._sessions() as session:
            cursor = (await session.execute(select(PollCursor).where(
                PollCursor.tenant_id == input.tenant_id, PollCursor.object == input.object))).scalar_one_or_none()
        if cursor is None:
            await self._move(input, None, input.now)
            return PollResult(new_event_row_ids=[])
        actor = Actor(type="system", id=activity.info().workflow_id or "crm-poll", purpose="poll recent changes")
        try:
            async with self._drivers.open(input.tenant_id, actor) as driver:
                records = await driver.list_recent(CrmObject(input.object), cursor.since, input.limit)
                provider = driver.slug
        except (DriverError, LookupError) as exc:
            raise as_application_error(exc) from None
        rows: list[dict[str, Any]] = [{"id": uuid.uuid4(), "tenant_id": input.tenant_id, "provider": provider,
                 "event_id": f"poll:{input.object}:{r.external_id}:{(r.updated_at or cursor.since).isoformat()}"[:255],
                 "event_type": f"poll.{input.object}", "object": input.object, "external_id": r.external_id,
                 # The workflow that polled starts each event's call workflow itself (durably): no redispatch.
                 "status": "dispatched", "received_at": utcnow(), "kind": _kind(r, cursor.since),
                 "occurred_at": r.updated_at, "changed_fields": [], "source": "poll"} for r in records]
        async with self._sessions() as session, session.begin():
            new_ids = await outbound.insert_events(session, rows)
        newest = max((r.updated_at for r in records if r.updated_at), default=cursor.since)
        await self._move(input, cursor.id, max(newest, cursor.since))
        return PollResult(new_event_row_ids=new_ids)

    async def _move(self, input: PollInput, cursor_id: uuid.UUID | None, since: datetime) -> None:
        async with self._sessions() as session, session.begin():
            if cursor_id is None:
                await session.execute(outbound._insert(session, PollCursor).values(
                    id=uuid.uuid4(), tenant_id=input.tenant_id, object=input.object, since=since,
                    updated_at=utcnow()).on_conflict_do_nothing(index_elements=["tenant_id", "object"]))
            else:
                cursor = await session.get(PollCursor, cursor_id)
                if cursor is not None:
                    cursor.since = since
