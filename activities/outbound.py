"""Outbound call activities: match an inbound event to a trigger, then gate and place the call.

`match_trigger` reads the record from the CRM (phone, time zone, condition fields) and keeps only a keyed hash
of the phone; `gate_and_place` re-checks every gate right before each call attempt, writes one audit row per
decision, and hands a placed call to the tenant's dialer as a signed Standard Webhooks POST (ids only) whose
`webhook-id` is the call request's: a retried delivery is the same message, never a second call.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import call_gates
from activities.crm_write import as_application_error
from activities.outbound_record import conditions_hold, read_record
from activities.outbound_types import GateInput, GateResult, MatchTriggerInput, MatchTriggerResult
from drivers.errors import DriverError, NotFoundError
from drivers.mapping import trigger_names
from drivers.registry import get_driver_class
from drivers.webhooks import sign_standard
from store import outbound
from store.field_mapping import load_mapping
from store.models import AuditLog
from store.outbound_models import CallRequest, InboundCrmEvent, OutboundTrigger
from vault.connections import Actor, DriverProvider

SecretLoader = Callable[[uuid.UUID], Any]  # async: tenant -> the dialer's whsec_ secret


def _actor(purpose: str) -> Actor:
    info = activity.info()
    return Actor(type="system", id=info.workflow_id or "outbound", purpose=purpose,
                 request_id=f"{info.workflow_run_id}:{info.activity_id}:{info.attempt}")


class OutboundActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], drivers: DriverProvider, subject_hash_key: str,
                 dialer_secret: SecretLoader, http: Callable[[], httpx.AsyncClient] | None = None) -> None:
        self._sessions, self._drivers, self._key = sessions, drivers, subject_hash_key
        self._dialer_secret = dialer_secret
        self._http = http or (lambda: httpx.AsyncClient(timeout=15.0, follow_redirects=False))

    def all(self) -> list[Callable[..., Any]]:
        return [self.outbound_match_trigger, self.outbound_gate_and_place]

    @activity.defn
    async def outbound_match_trigger(self, input: MatchTriggerInput) -> MatchTriggerResult:
        async with self._sessions() as session:
            event = await session.get(InboundCrmEvent, input.event_row_id)
            if event is None or event.tenant_id != input.tenant_id or not event.object or not event.external_id:
                return MatchTriggerResult(reason="not_a_record")
            triggers = [t for t in (await session.execute(select(OutboundTrigger).where(
                OutboundTrigger.tenant_id == input.tenant_id, OutboundTrigger.enabled.is_(True),
                OutboundTrigger.object == event.object).order_by(OutboundTrigger.created_at))).scalars()
                if event.kind in t.kinds]
            mapping = trigger_names(await load_mapping(session, input.tenant_id, get_driver_class(event.provider)))
        if not triggers:
            await self._finish_event(event.id, input.now)
            return MatchTriggerResult(reason="no_trigger")
        try:
            async with self._drivers.open(input.tenant_id, _actor("outbound:match")) as driver:
                facts = await read_record(driver, event.object, event.external_id)
        except NotFoundError:
            await self._finish_event(event.id, input.now)
            return MatchTriggerResult(reason="record_gone")
        except (DriverError, LookupError) as exc:
            raise as_application_error(exc) from None
        chosen = next((t for t in triggers if conditions_hold(t.conditions, facts.fields, event.changed_fields,
                                                               mapping)), None)
        if chosen is None:
            await self._finish_event(event.id, input.now)
            return MatchTriggerResult(reason="no_trigger")
        zones = call_gates.callee_zones(facts.e164, facts.zone) if facts.e164 else []
        row = {"id": uuid.uuid4(), "tenant_id": input.tenant_id, "event_row_id": event.id, "trigger_id": chosen.id,
               "provider": event.provider, "object": event.object, "external_id": event.external_id,
               "purpose": chosen.purpose, "channel": chosen.channel, "time_zones": zones, "status": "pending",
               "person_hash": outbound.person_hash(self._key, input.tenant_id, facts.e164) if facts.e164 else None,
               "deadline": input.now + timedelta(hours=chosen.max_defer_hours), "created_at": input.now}
        async with self._sessions() as session, session.begin():
            await session.execute(outbound._insert(session, CallRequest).values(row)
                                  .on_conflict_do_nothing(index_elements=["event_row_id"]))
            existing = (await session.execute(select(CallRequest.id).where(
                CallRequest.event_row_id == event.id))).scalar_one()
            await outbound.mark_events(session, [event.id], "processed", processed_at=input.now)
        return MatchTriggerResult(call_request_id=existing, reason="matched")

    async def _finish_event(self, event_row_id: uuid.UUID, now: datetime) -> None:
        async with self._sessions() as session, session.begin():
            await outbound.mark_events(session, [event_row_id], "processed", processed_at=now)

    @activity.defn
    async def outbound_gate_and_place(self, input: GateInput) -> GateResult:
        async with self._sessions() as session, session.begin():
            request = (await session.execute(select(CallRequest).where(CallRequest.id == input.call_request_id)
                                             .with_for_update())).scalar_one()
            if request.tenant_id != input.tenant_id:
                raise ApplicationError("call request of another tenant", non_retryable=True)
            if request.status in ("placed", "blocked"):  # a retry after the decision was committed
                decision = call_gates.Decision("place" if request.status == "placed" else "block",
                                               request.reason or request.status)
            else:
                decision = await self._decide(session, request, input.now)
                self._apply(session, request, decision, input.now)
            policy = await outbound.policy(session, input.tenant_id)
            deliver = decision.action == "place" and policy.dialer_url and request.delivered_at is None
            dialer_url, call = policy.dialer_url, _call_body(request, input.now)
        if deliver and dialer_url:
            await self._deliver(input.tenant_id, dialer_url, request.id, call)
            async with self._sessions() as session, session.begin():
                placed = await session.get(CallRequest, request.id)
                if placed is not None and placed.delivered_at is None:
                    placed.delivered_at = input.now
        return GateResult(action=decision.action, reason=decision.reason, until=decision.until)

    async def _decide(self, session: AsyncSession, request: CallRequest, now: datetime) -> call_gates.Decision:
        policy = await outbound.policy(session, request.tenant_id)
        window, _ = call_gates.parse_window(policy.window_start, policy.window_end)
        person = request.person_hash
        consent = await outbound.consent(session, request.tenant_id, person, request.purpose,
                                         request.channel) if person else None
        zones = tuple(request.time_zones)
        placed_today = 0
        if person and zones:
            start, end = call_gates.local_day(now, zones[0])
            placed_today = await outbound.placed_between(session, request.tenant_id, person, start, end)
        facts = call_gates.Facts(
            has_phone=person is not None,
            do_not_call=bool(person) and await outbound.on_do_not_call(session, request.tenant_id, str(person)),
            consent="none" if consent is None else ("revoked" if consent.revoked_at else "granted"),
            zones=zones, placed_today=placed_today, daily_cap=policy.daily_attempt_cap,
            deadline=request.deadline or now)
        return call_gates.decide(now, facts, window or call_gates.Window(*call_gates.DEFAULT_WINDOW))

    @staticmethod
    def _apply(session: AsyncSession, request: CallRequest, decision: call_gates.Decision, now: datetime) -> None:
        request.status = {"place": "placed", "defer": "deferred", "block": "blocked"}[decision.action]
        request.reason, request.not_before = decision.reason, decision.until
        if decision.action == "place":
            request.placed_at = now
        session.add(AuditLog(tenant_id=request.tenant_id, actor_type="system", actor_id="outbound",
                             action=f"outbound.{request.status}", purpose=request.purpose[:200],
                             subject_hash=request.person_hash, at=now,
                             details={"call_request_id": str(request.id), "event_row_id": str(request.event_row_id),
                                      "trigger_id": str(request.trigger_id), "reason": decision.reason,
                                      "until": decision.until.isoformat() if decision.until else None}))

    async def _deliver(self, tenant_id: uuid.UUID, url: str, call_request_id: uuid.UUID, call: dict[str, Any]
                       ) -> None:
        # The signature's timestamp is this attempt's (Standard Webhooks), on the wall clock the dialer checks.
        now = datetime.now(UTC)
        secret = await self._dialer_secret(tenant_id)
        body = json.dumps(call, separators=(",", ":")).encode()
        msg_id = f"call_{call_request_id.hex}"
        headers = {"content-type": "application/json", "webhook-id": msg_id,
                   "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": sign_standard(secret, msg_id, now, body)}
        try:
            async with self._http() as http:
                response = await http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ApplicationError(f"dialer unreachable ({type(exc).__name__})", type="DialerUnavailable") from None
        if response.status_code == 410:  # Standard Webhooks: the endpoint is gone for good
            raise ApplicationError("dialer endpoint gone (410)", type="DialerGone", non_retryable=True)
        if not response.is_success:
            raise ApplicationError(f"dialer answered {response.status_code}", type="DialerUnavailable")


def _call_body(request: CallRequest, now: datetime) -> dict[str, Any]:
    """What the dialer receives: ids only; it reads the person from the CRM (or our lookup tool)."""
    return {"type": "call.requested", "timestamp": now.isoformat(),
            "data": {"call_request_id": str(request.id), "tenant_id": str(request.tenant_id),
                     "provider": request.provider, "object": request.object, "external_id": request.external_id,
                     "purpose": request.purpose, "channel": request.channel,
                     "event_row_id": str(request.event_row_id)}}
