"""The Starlette application: `create_app()` wires routes, error handlers and the shared context."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from api import ingest_docs, metrics, openapi, relay
from api import mcp_server as mcp_routes
from api.body_limit import BodyLimit
from api.console import routes as console_routes
from api.context import AppContext
from api.errors import EXCEPTION_HANDLERS
from api.routes import connect, consent, forget, health, incidents, ingest, outbound, public, records, tools, webhooks
from api.routes import install as install_routes
from api.routes import mapping as mapping_routes
from api.routes import tool_catalog as tool_schema_routes
from api.temporal import TemporalGateway
from settings import Settings, get_settings
from store.session import create_engine, session_factory

# One line per route module; each exposes `routes`.
ROUTE_MODULES = [health, tools, public, forget, openapi, connect, ingest, incidents, metrics, webhooks, outbound,
                 consent, records, mapping_routes, install_routes, tool_schema_routes, mcp_routes, console_routes]


ingest_docs.attach(ingest.routes)  # until the ingest handlers carry their own @document


def all_routes() -> list[BaseRoute]:
    return [route for module in ROUTE_MODULES for route in module.routes]


def build_context(settings: Settings) -> AppContext:
    engine = create_engine(settings.database_url)
    return AppContext(settings=settings, engine=engine, sessions=session_factory(engine),
                      temporal=TemporalGateway(settings.temporal))


def create_app(settings: Settings | None = None, context: AppContext | None = None) -> Starlette:
    """Build the app. Tests pass a ready `context`; otherwise the lifespan builds one from settings."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = context is None
        app.state.ctx = context if context is not None else build_context(settings or get_settings())
        try:
            async with relay.serving(app.state.ctx):  # the outbox relay runs in every API process
                yield
        finally:
            if owned:
                for extra in app.state.ctx.extras.values():  # e.g. the rate limiter's Redis pool
                    if hasattr(extra, "aclose"):
                        await extra.aclose()
                await app.state.ctx.engine.dispose()

    limit = (context.settings if context is not None else settings or get_settings()).api.max_body_bytes
    app = Starlette(routes=all_routes(), exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan,
                    middleware=[Middleware(metrics.CountRequests), Middleware(BodyLimit, max_bytes=limit)])
    if context is not None:
        app.state.ctx = context  # usable without running the lifespan (httpx ASGITransport does not)
    return app
