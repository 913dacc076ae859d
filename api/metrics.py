"""`GET /metrics` for the API (Prometheus text) and the middleware that counts every answer by route.

Requests are counted by route *template* (`/api/agent/customers`, `/api/tenants/{tenant_id}/…`), never by
the raw path, so no id or content reaches a label. The outbox backlog and the content rows by sync state
are read from the database when scraped, per tenant, and cached for `settings.metrics.cache_seconds`
so a busy scraper does not turn into a query load. Unauthenticated like /healthz: bind the API to a private
interface or filter /metrics at the proxy (docs/metrics.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import telemetry
from api.context import AppContext, context_of
from store.base import utcnow
from store.models import CONTENT_TABLES, MirrorOutbox

log = logging.getLogger(__name__)

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}


class CountRequests:
    """Counts each answer under (route template, method, status) once the route is known."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def keep_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, keep_status)
        finally:
            # The router records the matched route in the (shared) scope; unmatched paths share one label.
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in METHODS else "OTHER"
            telemetry.API_REQUESTS.labels(route, method, str(status[0])).inc()


class BacklogGauges:
    """Fills the backlog gauges from the database, at most once per `ttl` seconds."""

    def __init__(self, ttl: float) -> None:
        self.ttl, self._read_at, self._lock = ttl, float("-inf"), asyncio.Lock()

    async def refresh(self, ctx: AppContext) -> None:
        async with self._lock:
            if time.monotonic() - self._read_at < self.ttl:
                return
            try:
                await self._read(ctx)
            except Exception as exc:  # a scrape must still answer (the counters are in memory)
                log.warning("metrics: backlog query failed (%s)", type(exc).__name__)
                return
            self._read_at = time.monotonic()

    async def _read(self, ctx: AppContext) -> None:
        async with ctx.sessions() as session:
            outbox = (await session.execute(
                select(MirrorOutbox.tenant_id, func.count(), func.min(MirrorOutbox.created_at))
                .where(MirrorOutbox.relayed_at.is_(None)).group_by(MirrorOutbox.tenant_id))).all()
            rows = []
            for model in CONTENT_TABLES:
                table = model.__tablename__  # type: ignore[attr-defined]
                counted = await session.execute(select(model.tenant_id, model.sync_state, func.count())
                                                .group_by(model.tenant_id, model.sync_state))
                rows += [(table, *row) for row in counted.all()]
        now = utcnow()
        telemetry.OUTBOX_BACKLOG.clear()
        telemetry.OUTBOX_OLDEST.clear()
        for tenant, count, oldest in outbox:
            telemetry.OUTBOX_BACKLOG.labels(str(tenant)).set(count)
            telemetry.OUTBOX_OLDEST.labels(str(tenant)).set(_age(now, oldest))
        telemetry.MIRROR_ROWS.clear()
        for table, tenant, state, count in rows:
            telemetry.MIRROR_ROWS.labels(str(tenant), table, state).set(count)


def _age(now: datetime, then: datetime | None) -> float:
    if then is None:
        return 0.0
    if then.tzinfo is None:  # SQLite hands datetimes back naive (stored as UTC)
        then = then.replace(tzinfo=now.tzinfo)
    return max(0.0, (now - then).total_seconds())


async def metrics(request: Request) -> Response:
    """Prometheus text exposition of this process's metrics and the database backlog gauges."""
    ctx = context_of(request)
    gauges = ctx.extras.get("metrics_backlog")
    if gauges is None:
        gauges = ctx.extras.setdefault("metrics_backlog", BacklogGauges(ctx.settings.metrics.cache_seconds))
    await gauges.refresh(ctx)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics, methods=["GET"])]
