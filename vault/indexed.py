"""`IndexedDriver`: a tenant's driver with the phone index (store/phone_index.py) in front of its lookups.

What the index learns and forgets happens here, in the layer every caller of a driver shares (the agent's tool
routes and the mirror, erasure and polling activities all get their driver from a DriverProvider):
- `lookup_customer(phone=…)` asks the index first; a hit is one `get` by id, verified to still carry the number,
  instead of a search (slow, separately rate-limited, and blind to records created seconds ago);
- a found or created customer (a lead, where the provider's lead is the contact itself) is remembered (a found
  one after the answer, off the caller's time: once the tool route has sent it, see `learning_held`; a created one
  before the create returns);
- an update drops the record's entries (its phone may have changed) and remembers the phone it now carries;
  a delete drops them.
The index is a cache: its failures are logged and the call goes on as if it were empty, never failing a CRM call.
Everything else is the wrapped driver's, unchanged.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import uuid
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

from drivers.base import (
    BaseDriver,
    CreateResult,
    CrmObject,
    CustomerRecord,
    DeleteResult,
    MatchItem,
    Record,
    UpsertItem,
)
from drivers.base import UpsertOutcome as Outcome
from drivers.text import normalize_phone
from store.phone_index import PhoneIndex

log = logging.getLogger(__name__)


_learning: set[asyncio.Task[None]] = set()


class HeldLearning:
    """Index writes a route holds back until its answer is sent: they cost the event loop a few milliseconds of
    CPU (a caller's answer would wait behind them), and nobody waits for them. Released, it starts what it held,
    and a write made after that (a lookup that outlived its deadline) starts at once."""

    def __init__(self) -> None:
        self._steps: list[Coroutine[Any, Any, None]] = []
        self.released = False

    def hold(self, step: Coroutine[Any, Any, None]) -> None:
        self._steps.append(step)

    def release(self) -> None:
        self.released = True
        steps, self._steps = self._steps, []
        for step in steps:
            _start(step)


_held: contextvars.ContextVar[HeldLearning | None] = contextvars.ContextVar("held_learning", default=None)


@contextmanager
def learning_held() -> Iterator[HeldLearning]:
    """Within this block (and tasks started from it), the index writes that follow a found customer wait for
    `release()`: the tool route calls it once its answer is sent, and on an error at once."""
    held = HeldLearning()
    token = _held.set(held)
    try:
        yield held
    except BaseException:
        held.release()
        raise
    finally:
        _held.reset(token)


def _in_background(step: Coroutine[Any, Any, None]) -> None:
    held = _held.get()
    if held is not None and not held.released:
        held.hold(step)
    else:
        _start(step)


def _start(step: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(step)
    _learning.add(task)
    task.add_done_callback(_learning.discard)


async def settle_learning() -> None:
    """Wait for index writes still running after their lookup answered (shutdown; tests; the bench)."""
    while _learning:
        await asyncio.gather(*list(_learning), return_exceptions=True)


class IndexedDriver:
    """Delegates to `inner`; the verbs below also read or maintain the tenant's phone index."""

    def __init__(self, inner: BaseDriver, index: PhoneIndex, tenant_id: uuid.UUID) -> None:
        self.inner, self.index, self.tenant_id = inner, index, tenant_id
        self.index_hits = 0  # lookups answered through the index (tests and the bench read it)

    @classmethod
    def wrap(cls, driver: BaseDriver, index: PhoneIndex | None, tenant_id: uuid.UUID) -> BaseDriver:
        """`driver` with the index in front (once: an already indexed driver is returned as it is)."""
        if index is None or isinstance(driver, IndexedDriver):
            return driver
        # Not a BaseDriver subclass on purpose: every other attribute is the inner driver's (__getattr__).
        return cast(BaseDriver, cls(driver, index, tenant_id))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    # ----- lookups ------------------------------------------------------------------------------

    async def lookup_customer(self, *, phone: str | None = None, email: str | None = None,
                              external_id: str | None = None) -> CustomerRecord | None:
        e164 = normalize_phone(phone, self.inner.default_region) if phone else None
        if e164 is not None:
            known = await self._quietly(self.index.recall(self.tenant_id, self.inner.slug, e164))
            if known is not None:
                record = await self.inner.lookup_customer(external_id=known)
                if record is not None and self._carries(CrmObject.CUSTOMER, record.fields, e164, record.phone):
                    self.index_hits += 1
                    return record
                await self._quietly(self.index.forget_record(self.tenant_id, self.inner.slug, known))
        found = await self.inner.lookup_customer(phone=phone, email=email, external_id=external_id)
        if found is not None:  # remembered after the answer: a caller is waiting for it, not for our write
            _in_background(self._learn(CrmObject.CUSTOMER, found.external_id, found.fields, found.phone))
        return found

    async def match_customers(self, items: Sequence[MatchItem]) -> dict[str, str | None]:
        """The batch match with the index's record for each known phone as a hint (the driver verifies it, by
        id, and searches only for the phones it does not know); a hint the CRM answered otherwise is dropped."""
        phones = {item.key: normalize_phone(item.phone, self.inner.default_region) if item.phone else None
                  for item in items}
        asked = [e for item in items if item.known_id is None and (e := phones[item.key]) is not None]
        known = (await self._quietly(self.index.recall_many(self.tenant_id, self.inner.slug, asked)) or {}
                 ) if asked else {}
        hinted = [dataclasses.replace(item, known_id=known[e164]) if item.known_id is None
                  and (e164 := phones[item.key]) in known else item for item in items]
        found = await self.inner.match_customers(hinted)
        for item in hinted:
            if item.known_id is None:
                continue
            if found.get(item.key) == item.known_id:
                self.index_hits += 1
            else:  # the record no longer carries the number: forget what the index said about it
                await self._quietly(self.index.forget_record(self.tenant_id, self.inner.slug, item.known_id))
        return found

    # ----- writes -------------------------------------------------------------------------------

    async def create_record(self, object: CrmObject, fields: Mapping[str, Any], idempotency_key: str) -> CreateResult:
        result = await self.inner.create_record(object, fields, idempotency_key)
        await self._learn(object, result.external_id, fields)
        return result

    async def update_record(self, object: CrmObject, external_id: str, fields: Mapping[str, Any]) -> Record | None:
        record = await self.inner.update_record(object, external_id, fields)
        if self._touches_phone(object, fields):  # its numbers may have changed: forget them, learn the new ones
            await self._quietly(self.index.forget_record(self.tenant_id, self.inner.slug, external_id))
            await self._learn(object, external_id, record.fields if record is not None else fields)
        return record

    async def delete_record(self, object: CrmObject, external_id: str, *, hard: bool = False) -> DeleteResult:
        result = await self.inner.delete_record(object, external_id, hard=hard)
        await self._quietly(self.index.forget_record(self.tenant_id, self.inner.slug, external_id))
        return result

    async def upsert_many(self, object: CrmObject, items: Sequence[UpsertItem]) -> list[Outcome]:
        outcomes = await self.inner.upsert_many(object, items)
        for item, outcome in zip(items, outcomes, strict=False):
            if outcome.error is None and outcome.external_id is not None and self._touches_phone(object, item.fields):
                if not outcome.created:
                    await self._quietly(self.index.forget_record(self.tenant_id, self.inner.slug, outcome.external_id))
                await self._learn(object, outcome.external_id, item.fields)
        return outcomes

    # ----- helpers ------------------------------------------------------------------------------

    def _indexed(self, object: CrmObject) -> bool:
        return object is CrmObject.CUSTOMER or (object is CrmObject.LEAD and self.inner.leads_are_contacts)

    def _phone_fields(self, object: CrmObject) -> list[str]:
        catalog = self.inner.default_field_catalog
        return [name for key in ("phone", "mobile_phone") if (name := catalog.get(f"{object.value}.{key}"))]

    def _touches_phone(self, object: CrmObject, fields: Mapping[str, Any]) -> bool:
        return self._indexed(object) and any(name in fields for name in self._phone_fields(object))

    def _carries(self, object: CrmObject, fields: Mapping[str, Any], e164: str, *extra: str | None) -> bool:
        return e164 in self._phones(object, fields, *extra)

    def _phones(self, object: CrmObject, fields: Mapping[str, Any], *extra: str | None) -> set[str]:
        """The E.164 numbers a record carries, read from the fields the driver maps `<object>.phone` and
        `<object>.mobile_phone` to (and the customer's own `phone`)."""
        raw = {str(v) for v in (*(fields.get(name) for name in self._phone_fields(object)), *extra) if v}
        return {e for e in (normalize_phone(v, self.inner.default_region) for v in raw) if e}

    async def _learn(self, object: CrmObject, external_id: str, fields: Mapping[str, Any], *extra: str | None) -> None:
        if not self._indexed(object):
            return
        for e164 in self._phones(object, fields, *extra):
            await self._quietly(self.index.remember(self.tenant_id, self.inner.slug, object.value, e164, external_id))

    async def _quietly(self, step: Any) -> Any:
        try:
            return await step
        except Exception as exc:  # a cache: never fail (or slow into an error) the CRM call for it
            log.warning("phone index unavailable for tenant %s (%s)", self.tenant_id, type(exc).__name__)
            return None
