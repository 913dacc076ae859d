"""`POST /webhooks/crm/{provider}/{tenant}` on a real database: verify over the raw body, store ids only, ack;
every refusal is the same 401 and stores nothing; redeliveries are acked and not stored again; events stored
while Temporal is away are dispatched later.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment

from api import webhook_dispatch
from api.temporal import TemporalGateway
from drivers import athenahealth_webhooks
from drivers.hubspot_webhooks import sign_v3
from drivers.webhooks import sign_standard
from settings import Settings
from store.base import utcnow
from store.outbound_models import InboundCrmEvent
from tests.support.webhooks import WebhookRig, webhook_rig

pytestmark = [pytest.mark.integration]
SECRET = "app-client-secret-0123456789"


def _events(event_id: int = 1, object_id: int = 1001) -> bytes:
    return json.dumps([{"eventId": event_id, "subscriptionId": 1, "portalId": 62515, "appId": 54321,
                        "occurredAt": int(time.time() * 1000), "subscriptionType": "contact.creation",
                        "attemptNumber": 0, "objectId": object_id, "changeSource": "CRM"}]).encode()


def _signed(rig: WebhookRig, body: bytes, *, secret: str = SECRET, skew_ms: int = 0, tenant: Any = None,
            drop: str | None = None) -> tuple[str, dict[str, str]]:
    path = f"/webhooks/crm/hubspot/{tenant or rig.tenant_id}"
    stamp = int(time.time() * 1000) + skew_ms
    url = rig.settings.public_base_url + path
    headers = {"content-type": "application/json", "x-hubspot-request-timestamp": str(stamp),
               "x-hubspot-signature-v3": sign_v3(secret, "POST", url, body, stamp)}
    if drop:
        headers.pop(drop)
    return path, headers


async def _count(rig: WebhookRig) -> int:
    async with rig.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(InboundCrmEvent).where(
            InboundCrmEvent.tenant_id == rig.tenant_id))).scalar_one())


async def _configure_secret(rig: WebhookRig, provider: str = "hubspot", **body: Any) -> httpx.Response:
    answer = await rig.api.put(rig.path(f"webhooks/{provider}"), headers=rig.operator(), json=body)
    assert answer.status_code == 200, answer.text
    return answer


async def test_signed_delivery_is_stored_as_ids_and_a_redelivery_is_acked_once(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
    async with webhook_rig(settings, engine, sessions, None) as rig:
        await _configure_secret(rig, secret=SECRET)
        body = _events()
        for attempt in range(3):
            path, headers = _signed(rig, body)
            answer = await rig.api.post(path, content=body, headers=headers)
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"received": 1, "new": 1 if attempt == 0 else 0, "ignored": 0}
        async with rig.sessions() as session:
            row = (await session.execute(select(InboundCrmEvent).where(
                InboundCrmEvent.tenant_id == rig.tenant_id))).scalar_one()
        assert (row.event_id, row.object, row.external_id, row.kind, row.status) == (
            "1", "customer", "1001", "created", "received")  # Temporal away: stored, acked, not yet dispatched


async def test_every_refusal_is_the_same_401_and_stores_nothing(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
    async with webhook_rig(settings, engine, sessions, None) as rig:
        await _configure_secret(rig, secret=SECRET)
        body = _events()
        flipped = body[:10] + bytes([body[10] ^ 1]) + body[11:]
        attempts = {
            "wrong secret": (body, _signed(rig, body, secret=SECRET + "x")),
            "flipped byte": (flipped, _signed(rig, body)),
            "stale": (body, _signed(rig, body, skew_ms=-301_000)),
            "future": (body, _signed(rig, body, skew_ms=301_000)),
            "missing signature": (body, _signed(rig, body, drop="x-hubspot-signature-v3")),
            "missing timestamp": (body, _signed(rig, body, drop="x-hubspot-request-timestamp")),
            "unknown tenant": (body, _signed(rig, body, tenant=uuid.uuid4())),
            "not a tenant id": (body, _signed(rig, body, tenant="not-a-uuid")),
        }
        answers = {}
        for name, (content, (path, headers)) in attempts.items():
            answer = await rig.api.post(path, content=content, headers=headers)
            assert answer.status_code == 401, name
            assert answer.headers["content-type"] == "application/problem+json"
            answers[name] = {k: v for k, v in answer.json().items() if k != "instance"}
        assert len({json.dumps(a, sort_keys=True) for a in answers.values()}) == 1  # no oracle
        assert await _count(rig) == 0


async def test_oversized_body_is_413_and_nothing_is_stored(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
    async with webhook_rig(settings, engine, sessions, None) as rig:
        await _configure_secret(rig, secret=SECRET)
        body = b"[" + b" " * (600 * 1024) + b"]"
        path, headers = _signed(rig, body)
        answer = await rig.api.post(path, content=body, headers=headers)
        assert answer.status_code == 413 and answer.headers["content-type"] == "application/problem+json"
        assert await _count(rig) == 0


async def test_another_portals_events_are_acked_but_not_stored(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
    async with webhook_rig(settings, engine, sessions, None) as rig:
        await _configure_secret(rig, secret=SECRET)
        body = json.dumps([dict(json.loads(_events())[0], portalId=999)]).encode()
        path, headers = _signed(rig, body)
        answer = await rig.api.post(path, content=body, headers=headers)
        assert answer.json() == {"received": 1, "new": 0, "ignored": 1}
        assert await _count(rig) == 0


SF_BODY = ('<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/'
           'envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><notifications xmlns='
           '"http://soap.sforce.com/2005/09/outbound"><OrganizationId>{org}</OrganizationId><Notification><Id>{nid}'
           '</Id><sObject xsi:type="sf:Lead" xmlns:sf="urn:sobject.enterprise.soap.sforce.com"><sf:Id>00Q000000000001'
           '</sf:Id><sf:Phone>2125550100</sf:Phone></sObject></Notification></notifications></soapenv:Body>'
           '</soapenv:Envelope>')


async def test_salesforce_outbound_message_needs_the_path_token_and_the_org(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
    async with webhook_rig(settings, engine, sessions, None, provider="salesforce") as rig:
        url = (await _configure_secret(rig, "salesforce", org_id="00D5g000004ABCDEAA")).json()["url"]
        path = url.removeprefix(settings.public_base_url)
        body = SF_BODY.format(org="00D5g000004ABCDEAA", nid="04l000000000001").encode()
        answer = await rig.api.post(path, content=body, headers={"content-type": "text/xml"})
        assert answer.status_code == 200 and b"<Ack>true</Ack>" in answer.content
        refused = [
            await rig.api.post(path[:-1] + ("x" if path[-1] != "x" else "y"), content=body),
            await rig.api.post(path.rpartition("/")[0], content=body),
            await rig.api.post(path, content=SF_BODY.format(org="00D5g000004ZZZZEAA", nid="04l2").encode()),
        ]
        assert [r.status_code for r in refused] == [401, 401, 401]
        async with rig.sessions() as session:
            row = (await session.execute(select(InboundCrmEvent).where(
                InboundCrmEvent.tenant_id == rig.tenant_id))).scalar_one()
        assert (row.object, row.external_id, row.changed_fields) == ("lead", "00Q000000000001", ["Phone"])


async def test_standard_webhooks_partner_gets_an_issued_secret(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
    from datetime import UTC, datetime

    async with webhook_rig(settings, engine, sessions, None, provider="custom_webhook") as rig:
        issued = (await _configure_secret(rig, "custom_webhook")).json()
        assert issued["secret"].startswith("whsec_")
        body = json.dumps({"type": "lead.created", "timestamp": datetime.now(UTC).isoformat(),
                           "data": {"id": "L-1"}}).encode()
        now = datetime.now(UTC)
        headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": sign_standard(issued["secret"], "msg_1", now, body)}
        path = issued["url"].removeprefix(settings.public_base_url)
        assert (await rig.api.post(path, content=body, headers=headers)).json()["new"] == 1
        assert (await rig.api.post(path, content=body, headers=headers)).json()["new"] == 0
        assert (await rig.api.post(path, content=body + b" ", headers=headers)).status_code == 401


async def test_validation_probes(settings: Settings, engine: AsyncEngine,
                                 sessions: async_sessionmaker[AsyncSession]) -> None:
    async with webhook_rig(settings, engine, sessions, None, provider="athenahealth") as rig:
        base = f"/webhooks/crm/athenahealth/{rig.tenant_id}"
        answer = await rig.api.get(base, params={"hub.mode": "subscribe", "hub.challenge": "c-123"})
        assert (answer.status_code, answer.text) == (200, "c-123")
        assert (await rig.api.head(base)).status_code == 200
        assert (await rig.api.head(f"/webhooks/crm/athenahealth/{uuid.uuid4()}")).status_code == 401
        await _configure_secret(rig, "athenahealth", secret="athena-secret-0123")
        handshake = json.dumps({"resourceType": "Bundle", "type": "history", "timestamp": utcnow().isoformat(),
                                "entry": [{"resource": {"resourceType": "SubscriptionStatus", "type": "handshake",
                                                        "notificationEvent": []}}]}).encode()
        signed = {"x-hub-signature": athenahealth_webhooks.sign("athena-secret-0123", handshake)}
        answer = await rig.api.post(base, content=handshake, headers=signed)
        assert answer.json() == {"received": 0, "new": 0, "ignored": 0}
        assert (await rig.api.post("/webhooks/crm/odoo/" + str(uuid.uuid4()), content=b"{}")).status_code == 404


async def test_events_stored_while_temporal_was_away_are_dispatched_later(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
        time_skipping_env: WorkflowEnvironment) -> None:
    async with webhook_rig(settings, engine, sessions, None) as rig:
        await _configure_secret(rig, secret=SECRET)
        body = _events(event_id=77)
        path, headers = _signed(rig, body)
        assert (await rig.api.post(path, content=body, headers=headers)).json()["new"] == 1
        async with rig.sessions() as session, session.begin():  # a minute has passed
            await session.execute(update(InboundCrmEvent).where(InboundCrmEvent.tenant_id == rig.tenant_id)
                                  .values(received_at=utcnow().replace(year=2020)))
        rig.ctx.temporal = TemporalGateway(settings.temporal, client=time_skipping_env.client)
        assert await webhook_dispatch.redispatch_stale(rig.ctx, force=True) >= 1
        async with rig.sessions() as session:
            row = (await session.execute(select(InboundCrmEvent).where(
                InboundCrmEvent.tenant_id == rig.tenant_id))).scalar_one()
        assert row.status == "dispatched"
        # Dispatching again (a second API process, a retry) starts nothing new.
        assert await webhook_dispatch.dispatch(rig.ctx, [(rig.tenant_id, row.id)]) == 1


async def test_a_concurrent_burst_with_redeliveries_stores_each_event_once(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
    import asyncio

    async with webhook_rig(settings, engine, sessions, None) as rig:
        await _configure_secret(rig, secret=SECRET)
        ids = list(range(1, 36)) + list(range(1, 16))  # 35 events, 15 of them delivered twice, all at once

        async def deliver(event_id: int) -> dict[str, int]:
            body = _events(event_id=event_id, object_id=event_id)
            path, headers = _signed(rig, body)
            answer = await rig.api.post(path, content=body, headers=headers)
            assert answer.status_code == 200
            result: dict[str, int] = answer.json()
            return result

        answers = await asyncio.gather(*(deliver(i) for i in ids))
        assert sum(a["new"] for a in answers) == 35
        assert await _count(rig) == 35
