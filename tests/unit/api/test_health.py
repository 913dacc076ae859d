from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.app import create_app
from api.context import AppContext
from api.temporal import TemporalGateway
from settings import Settings, TemporalSettings


def app_with(settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession],
             temporal: TemporalGateway) -> httpx.AsyncClient:
    context = AppContext(settings=settings, engine=engine, sessions=sessions, temporal=temporal)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(context=context)), base_url="http://t")


async def test_healthz_answers_without_dependencies(settings: Settings, engine: AsyncEngine,
                                                    sessions: async_sessionmaker[AsyncSession]) -> None:
    nowhere = TemporalGateway(TemporalSettings(address="127.0.0.1:1"))
    async with app_with(settings, engine, sessions, nowhere) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_readyz_is_ready_with_database_and_temporal(settings: Settings, engine: AsyncEngine,
                                                          sessions: async_sessionmaker[AsyncSession],
                                                          temporal_client: Client) -> None:
    gateway = TemporalGateway(settings.temporal, client=temporal_client)
    async with app_with(settings, engine, sessions, gateway) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "temporal": "ok"}


async def test_readyz_says_which_dependency_is_down(settings: Settings, engine: AsyncEngine,
                                                    sessions: async_sessionmaker[AsyncSession]) -> None:
    nowhere = TemporalGateway(TemporalSettings(address="127.0.0.1:1"))
    async with app_with(settings, engine, sessions, nowhere) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "ok", "temporal": "unreachable"}


async def test_unknown_route_is_a_problem_document(settings: Settings, engine: AsyncEngine,
                                                   sessions: async_sessionmaker[AsyncSession]) -> None:
    nowhere = TemporalGateway(TemporalSettings(address="127.0.0.1:1"))
    async with app_with(settings, engine, sessions, nowhere) as client:
        response = await client.get("/no/such/route")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/not-found")
