"""What every route needs, built once per process in the app's lifespan (or handed in by tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import Request

from api.temporal import TemporalGateway
from settings import Settings


@dataclass
class AppContext:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    temporal: TemporalGateway
    # Later pieces (rate limiter, vault, driver factory) hang here, keyed by name.
    extras: dict[str, Any] = field(default_factory=dict)


def context_of(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx
