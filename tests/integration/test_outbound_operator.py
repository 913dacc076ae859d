"""Operator routes for triggers, calling policy, consent and do-not-call: validation (4xx problems listing every
problem), tenant pinning, and no phone stored in clear; the agent service's pull of placed calls."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.auth import mint_token
from settings import Settings
from store import outbound
from store.outbound_models import CallRequest, OutboundConsent
from tests.support.webhooks import webhook_rig

pytestmark = [pytest.mark.integration]


async def test_trigger_validation_lists_every_problem(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
    async with webhook_rig(settings, engine, sessions, None) as rig:
        answer = await rig.api.post(rig.path("triggers"), headers=rig.operator(), json={
            "name": "x", "object": "spaceship", "kinds": ["created", "exploded"], "purpose": "lead_callback",
            "channel": "fax", "conditions": [{"field": "lifecyclestage", "op": "like"}, {"op": "eq"}]})
        assert answer.status_code == 422 and answer.headers["content-type"] == "application/problem+json"
        errors = answer.json()["errors"]
        assert len(errors) == 5, errors
        assert any("object" in e for e in errors) and any("exploded" in e for e in errors)
        unknown = await rig.api.post(rig.path("triggers"), headers=rig.operator(), json={
            "name": "x", "object": "lead", "kinds": ["created"], "purpose": "p", "colour": "red"})
        assert unknown.status_code == 422
        good = {"name": "web leads", "object": "lead", "kinds": ["created"], "purpose": "new_lead_callback",
                "conditions": [{"field": "lead.source", "op": "eq", "value": "web"}]}
        created = await rig.api.post(rig.path("triggers"), headers=rig.operator(), json=good)
        assert created.status_code == 201
        trigger_id = created.json()["id"]
        replaced = await rig.api.put(rig.path(f"triggers/{trigger_id}"), headers=rig.operator(),
                                     json=good | {"enabled": False})
        assert replaced.json()["enabled"] is False
        listed = await rig.api.get(rig.path("triggers"), headers=rig.operator())
        assert [t["id"] for t in listed.json()["triggers"]] == [trigger_id]
        assert (await rig.api.delete(rig.path(f"triggers/{trigger_id}"), headers=rig.operator())).status_code == 204


async def test_policy_may_only_be_stricter(settings: Settings, engine: AsyncEngine,
                                           sessions: async_sessionmaker[AsyncSession]) -> None:
    async with webhook_rig(settings, engine, sessions, None) as rig:
        wide = await rig.api.put(rig.path("outbound-policy"), headers=rig.operator(),
                                 json={"window_start": "07:30", "window_end": "21:30", "dialer_url": "ftp://x"})
        assert wide.status_code == 422 and len(wide.json()["errors"]) == 3
        strict = await rig.api.put(rig.path("outbound-policy"), headers=rig.operator(),
                                   json={"window_start": "09:00", "window_end": "18:00", "daily_attempt_cap": 1})
        assert strict.status_code == 200 and "dialer_secret" not in strict.json()
        assert (await rig.api.get(rig.path("outbound-policy"), headers=rig.operator())).json()["window_end"] == "18:00"


async def test_operator_of_another_tenant_sees_nothing(settings: Settings, engine: AsyncEngine,
                                                       sessions: async_sessionmaker[AsyncSession]) -> None:
    async with webhook_rig(settings, engine, sessions, None) as rig:
        other = mint_token(settings, subject="op-2", role="operator", tenant_id=uuid.uuid4())
        for method, suffix in (("GET", "triggers"), ("PUT", "outbound-policy"), ("POST", "consents")):
            answer = await rig.api.request(method, rig.path(suffix), headers={"authorization": f"Bearer {other}"},
                                           json={})
            assert answer.status_code == 404, suffix


async def test_consent_is_stored_by_keyed_hash_never_the_phone(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
    async with webhook_rig(settings, engine, sessions, None) as rig:
        bad = await rig.api.post(rig.path("consents"), headers=rig.operator(), json={
            "phone": "not a phone", "purpose": "p", "source": "web"})
        assert bad.status_code == 422
        granted = await rig.api.post(rig.path("consents"), headers=rig.operator(), json={
            "phone": "+1 (212) 555-0100", "purpose": "new_lead_callback", "source": "web_form"})
        assert granted.status_code == 201
        listed = await rig.api.post(rig.path("do-not-call"), headers=rig.operator(), json={
            "phone": "212-555-0199", "source": "customer asked"})
        assert listed.status_code == 201
        key = settings.subject_hash_key.get_secret_value()
        async with rig.sessions() as session:
            row = (await session.execute(select(OutboundConsent).where(
                OutboundConsent.tenant_id == rig.tenant_id))).scalar_one()
            assert row.person_hash == outbound.person_hash(key, rig.tenant_id, "+12125550100")
            assert await outbound.on_do_not_call(session, rig.tenant_id,
                                                 outbound.person_hash(key, rig.tenant_id, "+12125550199"))
            for table in ("outbound_consents", "outbound_do_not_call"):
                dump = str((await session.execute(text(f"SELECT * FROM {table}"))).all())
                assert "2125550100" not in dump and "2125550199" not in dump
        # The same phone in another tenant hashes differently.
        assert outbound.person_hash(key, uuid.uuid4(), "+12125550100") != row.person_hash


async def test_agent_service_pulls_a_placed_call_exactly_once(
        settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession]) -> None:
    async with webhook_rig(settings, engine, sessions, None) as rig:
        from store.base import utcnow

        call_id = uuid.uuid4()
        async with rig.sessions() as session, session.begin():
            session.add(CallRequest(id=call_id, tenant_id=rig.tenant_id, event_row_id=uuid.uuid4(),
                                    trigger_id=uuid.uuid4(), provider="hubspot", object="customer",
                                    external_id="1001", purpose="p", channel="voice", status="placed",
                                    reason="permitted", placed_at=utcnow()))
        agent = {"authorization": "Bearer " + mint_token(settings, subject="agent", role="agent",
                                                          tenant_id=rig.tenant_id)}
        listed = (await rig.api.get("/api/agent/call-requests", headers=agent)).json()["call_requests"]
        assert [c["id"] for c in listed] == [str(call_id)]
        first = await rig.api.post(f"/api/agent/call-requests/{call_id}/claim", headers=agent)
        second = await rig.api.post(f"/api/agent/call-requests/{call_id}/claim", headers=agent)
        assert (first.status_code, second.status_code) == (200, 409)
        assert (await rig.api.get("/api/agent/call-requests", headers=agent)).json()["call_requests"] == []
