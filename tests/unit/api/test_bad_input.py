"""Bad input on the tool and /v1 routes is a 4xx problem document, never a 500."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from settings import Settings
from tests.unit.api.support import SandboxProvider, agent_headers, key_headers, make_key

CASES: list[tuple[str, Any, int, str]] = [
    ("malformed json", b'{"object": "lead", ', 400, "malformed-json"),
    ("not utf-8", b'{"object": "\xff"}', 400, "malformed-json"),
    ("array body", b"[1, 2]", 422, "invalid-body"),
    ("wrong types", b'{"object": "lead", "fields": "Lou", "idempotency_key": 7}', 422, "invalid-body"),
    ("unknown object", b'{"object": "spaceship", "fields": {"a": 1}, "idempotency_key": "k"}', 422, "invalid-body"),
    ("nan value", b'{"object": "lead", "fields": {"a": NaN}, "idempotency_key": "k"}', 400, "malformed-json"),
    ("infinity", b'{"object": "lead", "fields": {"a": -Infinity}, "idempotency_key": "k"}', 400, "malformed-json"),
    ("lone surrogate", b'{"object": "lead", "fields": {"a": "\\ud800"}, "idempotency_key": "k"}', 422,
     "invalid-body"),
    ("nul in a key", b'{"object": "lead", "fields": {"a\\u0000": "x"}, "idempotency_key": "k"}', 422,
     "invalid-body"),
    ("nested value", b'{"object": "lead", "fields": {"a": {"b": 1}}, "idempotency_key": "k"}', 422, "invalid-body"),
    ("empty fields", b'{"object": "lead", "fields": {}, "idempotency_key": "k"}', 422, "invalid-body"),
]


@pytest.mark.parametrize(("name", "raw", "status", "slug"), CASES, ids=[c[0] for c in CASES])
async def test_bad_bodies_on_both_surfaces(
        name: str, raw: bytes, status: int, slug: str, api: httpx.AsyncClient, settings: Settings,
        tenant: uuid.UUID, sessions: async_sessionmaker[AsyncSession], provider: SandboxProvider) -> None:
    key = await make_key(sessions, tenant)
    for path, headers in (("/api/tools/crm_create_record", agent_headers(settings, tenant)),
                          ("/v1/crm/create-record", key_headers(key))):
        response = await api.post(path, content=raw, headers=headers | {"content-type": "application/json"})
        assert response.status_code == status, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith(f"/{slug}")
    assert provider.state(tenant).records.get("contacts", {}) == {}


async def test_validation_errors_never_echo_the_submitted_values(
        api: httpx.AsyncClient, settings: Settings, tenant: uuid.UUID) -> None:
    response = await api.post("/api/tools/crm_create_record", headers=agent_headers(settings, tenant),
                              json={"object": "lead", "fields": {"phone": {"nested": "+15557654321"}}})
    assert response.status_code == 422 and "+15557654321" not in response.text


async def test_oversized_bodies_are_413(api: httpx.AsyncClient, settings: Settings, tenant: uuid.UUID,
                                        sessions: async_sessionmaker[AsyncSession]) -> None:
    huge = b'{"object": "lead", "fields": {"a": "' + b"x" * (settings.api.max_body_bytes + 1) + b'"}}'
    key = await make_key(sessions, tenant)

    async def chunks() -> Any:  # no Content-Length: the limit must hold while streaming too
        for start in range(0, len(huge), 65536):
            yield huge[start:start + 65536]

    for path, headers in (("/api/tools/crm_create_record", agent_headers(settings, tenant)),
                          ("/v1/crm/create-record", key_headers(key))):
        declared = await api.post(path, content=huge, headers=headers)
        streamed = await api.post(path, content=chunks(), headers=headers)
        assert declared.status_code == streamed.status_code == 413
        assert declared.json()["type"].endswith("/body-too-large")


async def test_lookup_needs_an_identifier(api: httpx.AsyncClient, settings: Settings, tenant: uuid.UUID) -> None:
    response = await api.post("/api/tools/crm_lookup_customer", json={"conversation_id": "c"},
                              headers=agent_headers(settings, tenant))
    assert response.status_code == 422


async def test_list_recent_refuses_a_naive_timestamp(api: httpx.AsyncClient, settings: Settings,
                                                     tenant: uuid.UUID) -> None:
    response = await api.post("/api/tools/crm_list_recent", headers=agent_headers(settings, tenant),
                              json={"object": "customer", "since": "2025-01-01T00:00:00"})
    assert response.status_code == 422 and "time zone" in response.text


async def test_wrong_method_is_a_problem(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/crm/create-record")
    assert response.status_code == 405 and response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("raw", [b'{"name": "Ann", "fields": {"budget_max": NaN}}',
                                 b'{"name": "Ann\\u0000"}', b'{"name": "\\udc00Ann"}'])
async def test_every_route_reading_json_refuses_what_storage_cannot_hold(
        raw: bytes, api: httpx.AsyncClient, settings: Settings, tenant: uuid.UUID) -> None:
    # The agent ingest route (another module) stores the body in PostgreSQL text and JSON columns.
    response = await api.post("/api/agent/customers", content=raw,
                              headers=agent_headers(settings, tenant) | {"content-type": "application/json"})
    assert response.status_code in (400, 422) and response.headers["content-type"] == "application/problem+json"
