"""Voice-grade lookups through the tool routes, on a HubSpot sandbox with its search lag and limits on:
the deadline's "unknown caller" answer, the phone index that the late answer warms, and no duplicate contacts
when a caller calls again before the search index has caught up."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from api.app import create_app
from api.context import AppContext
from api.lookup import phone_index, settle_late_lookups
from settings import Settings
from tests.unit.api.support import SandboxProvider, agent_headers

LOOKUP = "/api/tools/crm_lookup_customer"
CREATE = "/api/tools/crm_create_record"
UPDATE = "/api/tools/crm_update_record"
SEARCH = "/api/tools/crm_search_records"
SEARCHES = "POST /crm/v3/objects/{object_type}/search"


def _lagging(provider: SandboxProvider, tenant: uuid.UUID) -> Any:
    """HubSpot's search index behind by a minute: far longer than any test, so nothing depends on timing."""
    state = provider.state(tenant)
    state.search_index.lag_seconds = 60.0
    return state


async def _answer_the_phone(api: httpx.AsyncClient, headers: dict[str, str], phone: str, conversation: str) -> str:
    """What the agent does when a call comes in: look the caller up, and create them when unknown."""
    found = (await api.post(LOOKUP, json={"phone": phone, "conversation_id": conversation}, headers=headers)).json()
    if found["found"]:
        return str(found["customer"]["external_id"])
    created = await api.post(CREATE, headers=headers, json={
        "object": "customer", "conversation_id": conversation,
        "fields": {"first_name": "Layla", "last_name": "Haddad", "phone": phone}})
    return str(created.json()["external_id"])


async def test_a_stalled_crm_answers_unknown_caller_and_its_late_answer_warms_the_index(
        api: httpx.AsyncClient, ctx: AppContext, settings: Settings, tenant: uuid.UUID,
        provider: SandboxProvider) -> None:
    state = provider.state(tenant)
    wanted = state.add("contacts", {"firstname": "Omar", "lastname": "Saleh", "phone": "+15551230000"}).id
    settings.lookup.deadline_ms = 100
    state.knobs.latency_seconds = 1.0  # every CRM call takes ten deadlines
    response = await api.post(LOOKUP, json={"phone": "(555) 123-0000"}, headers=agent_headers(settings, tenant))
    assert response.status_code == 200
    assert response.json() == {"ok": True, "found": False, "customer": None, "reason": "crm_timeout"}
    await settle_late_lookups(ctx)  # the search went on after the answer, and its result was remembered
    state.knobs.latency_seconds = 0.0
    searches = state.calls[SEARCHES]
    again = (await api.post(LOOKUP, json={"phone": "+1 555 123 0000"}, headers=agent_headers(settings, tenant))).json()
    assert again["found"] is True and again["customer"]["external_id"] == wanted and again["reason"] is None
    assert state.calls[SEARCHES] == searches  # found by id through the index, no search


async def test_a_caller_calling_again_before_search_catches_up_is_not_created_twice(
        api: httpx.AsyncClient, settings: Settings, tenant: uuid.UUID, provider: SandboxProvider) -> None:
    state = _lagging(provider, tenant)
    headers = agent_headers(settings, tenant)
    first = await _answer_the_phone(api, headers, "+971501234567", "call-1")
    search = (await api.post(SEARCH, json={"object": "customer", "query": "Haddad"}, headers=headers)).json()
    assert search["count"] == 0  # the lag is real: HubSpot's search does not see the new contact yet
    second = await _answer_the_phone(api, headers, "00971 50 123 4567", "call-2")
    assert second == first
    assert [r.id for r in state.records["contacts"].values()] == [first]


async def test_without_the_index_the_search_lag_creates_a_duplicate(
        api: httpx.AsyncClient, ctx: AppContext, settings: Settings, tenant: uuid.UUID,
        provider: SandboxProvider) -> None:
    """The control for the test above: the same calls with the index turned off make two contacts."""
    ctx.extras["phone_index"] = None
    state = _lagging(provider, tenant)
    headers = agent_headers(settings, tenant)
    await _answer_the_phone(api, headers, "+971501234567", "call-1")
    await _answer_the_phone(api, headers, "+971501234567", "call-2")
    assert len(state.records["contacts"]) == 2


async def test_an_update_moves_the_number_in_the_index(
        api: httpx.AsyncClient, settings: Settings, tenant: uuid.UUID, provider: SandboxProvider) -> None:
    _lagging(provider, tenant)
    headers = agent_headers(settings, tenant)
    contact = await _answer_the_phone(api, headers, "+971501234567", "call-1")
    changed = await api.post(UPDATE, headers=headers, json={
        "object": "customer", "external_id": contact, "fields": {"phone": "+966551234567"}})
    assert changed.json()["ok"] is True
    old = (await api.post(LOOKUP, json={"phone": "+971501234567"}, headers=headers)).json()
    new = (await api.post(LOOKUP, json={"phone": "+966 55 123 4567"}, headers=headers)).json()
    assert old["found"] is False  # the old number no longer leads to the contact
    assert new["found"] is True and new["customer"]["external_id"] == contact  # searchable only in a minute


async def test_a_stale_entry_falls_back_to_the_search(
        api: httpx.AsyncClient, settings: Settings, tenant: uuid.UUID, provider: SandboxProvider) -> None:
    state = provider.state(tenant)
    headers = agent_headers(settings, tenant)
    contact = await _answer_the_phone(api, headers, "+971501234567", "call-1")
    state.update(state.records["contacts"][contact], {"phone": "+14155550100"})  # changed in the CRM, not by us
    moved = state.add("contacts", {"firstname": "Layla", "lastname": "Haddad", "phone": "+971501234567"}).id
    found = (await api.post(LOOKUP, json={"phone": "+971501234567"}, headers=headers)).json()
    assert found["found"] is True and found["customer"]["external_id"] == moved


async def test_an_update_that_leaves_the_number_keeps_the_entry(
        api: httpx.AsyncClient, settings: Settings, tenant: uuid.UUID, provider: SandboxProvider) -> None:
    state = _lagging(provider, tenant)
    headers = agent_headers(settings, tenant)
    contact = await _answer_the_phone(api, headers, "+971501234567", "call-1")
    await api.post(UPDATE, headers=headers, json={"object": "customer", "external_id": contact,
                                                  "fields": {"city": "Dubai"}})
    searches = state.calls[SEARCHES]
    found = (await api.post(LOOKUP, json={"phone": "+971501234567"}, headers=headers)).json()
    assert found["found"] is True and found["customer"]["fields"]["customer.city"] == "Dubai"
    assert state.calls[SEARCHES] == searches


async def test_the_index_write_after_a_found_caller_waits_until_the_answer_is_sent(
        api: httpx.AsyncClient, ctx: AppContext, settings: Settings, tenant: uuid.UUID,
        provider: SandboxProvider) -> None:
    """The caller waits for the answer, not for our bookkeeping: the write that remembers the number starts only
    once the answer has gone out (it would otherwise take event-loop time the answer is waiting for)."""
    state = provider.state(tenant)
    state.add("contacts", {"firstname": "Omar", "lastname": "Saleh", "phone": "+971501234567"})
    index = phone_index(ctx)
    assert index is not None
    events: list[str] = []
    remember = index.remember

    async def remembered(*args: Any) -> None:
        events.append("index write")
        await remember(*args)

    index.remember = remembered  # type: ignore[method-assign]
    body = b'{"phone": "+971 50 123 4567"}'
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": LOOKUP, "raw_path": LOOKUP.encode(), "query_string": b"", "root_path": "", "client": None,
             "server": ("test", 80), "headers": [(k.lower().encode(), v.encode())
                                                 for k, v in agent_headers(settings, tenant).items()]
             + [(b"content-type", b"application/json")]}
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return pending.pop() if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            events.append("answer")
            assert b'"found":true' in message["body"]

    await create_app(context=ctx)(scope, receive, send)  # as a server hands it over (`api` closes the limiter)
    await settle_late_lookups(ctx)
    assert events == ["answer", "index write"]
