"""Voice-grade lookups for the tool routes: the phone index in front of the driver, and a hard deadline.

A caller waits on the line while `crm_lookup_customer` runs. Past `settings.lookup.deadline_ms` the tool answers
"unknown caller" (`{"ok": true, "found": false, "reason": "crm_timeout"}`) so the agent greets generically; the
CRM call is not abandoned: it finishes in the background (bounded by the tool deadline) and its answer warms the
phone index, so the caller's next call is found at once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

from starlette.requests import Request

from api.context import AppContext, context_of
from api.schemas import LookupCustomerResponse
from drivers.base import BaseDriver
from settings import Settings
from store.phone_index import PhoneIndex
from vault.indexed import IndexedDriver, settle_learning
from vault.provider import phone_index_from

log = logging.getLogger(__name__)

T = TypeVar("T")


def phone_index(ctx: AppContext) -> PhoneIndex | None:
    """The app's phone index: `extras["phone_index"]` when handed in, else built once from settings."""
    if "phone_index" not in ctx.extras:
        ctx.extras["phone_index"] = phone_index_from(ctx.settings, ctx.sessions)
    index: PhoneIndex | None = ctx.extras["phone_index"]
    return index


def indexed(request: Request, driver: BaseDriver, tenant_id: uuid.UUID) -> BaseDriver:
    """The driver with the phone index in front (the vault's provider already wraps; a test provider may not)."""
    return IndexedDriver.wrap(driver, phone_index(context_of(request)), tenant_id)


def started(request: Request) -> None:
    """Mark when the request arrived (the deadline covers our own work before the CRM call too)."""
    request.state.tool_started = asyncio.get_running_loop().time()


def remaining(request: Request, deadline: float) -> float:
    """What is left of `deadline` seconds since the request arrived (all of it when not marked)."""
    arrived: float | None = getattr(request.state, "tool_started", None)
    if arrived is None:
        return deadline
    return max(0.0, deadline - (asyncio.get_running_loop().time() - arrived))


def lookup_deadline(settings: Settings) -> float:
    return settings.lookup.deadline_ms / 1000


def unknown_caller() -> LookupCustomerResponse:
    return LookupCustomerResponse(found=False, reason="crm_timeout")


async def within(request: Request, work: Awaitable[T], deadline: float) -> T:
    """`work`'s result if it comes within `deadline` seconds; else TimeoutError, and `work` goes on in the
    background. It is kept in `extras["late_lookups"]` until done (also when the caller hangs up and cancels the
    request), so it is neither collected half-way nor silently lost."""
    task = asyncio.ensure_future(work)
    late: set[asyncio.Future[Any]] = context_of(request).extras.setdefault("late_lookups", set())
    late.add(task)
    task.add_done_callback(_settled(late))
    async with asyncio.timeout(deadline):
        return await asyncio.shield(task)


def _settled(late: set[asyncio.Future[Any]]) -> Any:
    def done(task: asyncio.Future[Any]) -> None:
        late.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Ids only: the exception's text may come from the CRM. An answer in time re-raised it already.
            log.debug("a lookup failed (%s)", type(task.exception()).__name__)

    return done


async def settle_late_lookups(ctx: AppContext) -> None:
    """Wait for lookups still running past their deadline (shutdown; tests that check the warmed index)."""
    late: set[asyncio.Future[Any]] = ctx.extras.get("late_lookups", set())
    if late:
        await asyncio.gather(*list(late), return_exceptions=True)
    await settle_learning()
