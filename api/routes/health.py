"""`/healthz`: the process is up. `/readyz`: the database and Temporal answer."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api.context import context_of


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    ctx = context_of(request)
    database_ok, temporal_ok = await asyncio.gather(_database_ok(request), ctx.temporal.healthy())
    ready = database_ok and temporal_ok
    body = {"status": "ready" if ready else "not-ready",
            "checks": {"database": "ok" if database_ok else "unreachable",
                       "temporal": "ok" if temporal_ok else "unreachable"}}
    return JSONResponse(body, status_code=200 if ready else 503)


async def _database_ok(request: Request) -> bool:
    try:
        async with context_of(request).engine.connect() as connection:
            await asyncio.wait_for(connection.execute(text("SELECT 1")), timeout=2)
        return True
    except Exception:  # unreachable or locked: not ready
        return False


routes = [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]
