"""Prometheus metrics every process records (API and worker), and the worker's `/metrics` listener.

The counters live in prometheus_client's default registry, defined once at import; the API serves them at
`GET /metrics` (api/metrics.py, which adds the backlog gauges it reads from the database at scrape time),
the worker on `settings.metrics.worker_port` (off unless set), and the Temporal SDK's own metrics go to
`settings.metrics.temporal_port` through the SDK runtime's Prometheus exporter (`worker_telemetry`).
Tracing (optional, `CRM_TEMPORAL__TRACING=true`) is OpenTelemetry through Temporal's own interceptor.

No label carries customer content or an unbounded value other than a tenant id: routes are path
templates, statuses and methods come from small sets, providers are driver slugs, outcomes are ours.
docs/metrics.md lists every series.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any
from wsgiref.simple_server import WSGIServer

import httpx
from prometheus_client import Counter, Gauge, Histogram, start_http_server
from temporalio.client import Interceptor
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from settings import MetricsSettings

log = logging.getLogger(__name__)

API_REQUESTS = Counter("crm_sor_api_requests", "API requests answered, by route template, method and status",
                       ["route", "method", "status"])
OUTBOX_BACKLOG = Gauge("crm_sor_outbox_backlog", "Mirror intents not yet relayed to a workflow", ["tenant"])
OUTBOX_OLDEST = Gauge("crm_sor_outbox_oldest_age_seconds", "Age of the oldest unrelayed mirror intent", ["tenant"])
MIRROR_ROWS = Gauge("crm_sor_mirror_rows", "Customer-content rows by CRM sync state", ["tenant", "table", "state"])
DECRYPTS = Counter("crm_sor_credential_decrypts", "Credential decrypts, by provider and outcome",
                   ["provider", "outcome"])
AUDIT_WRITE_FAILURES = Counter("crm_sor_audit_write_failures", "Audit rows that could not be written", ["action"])
RATE_LIMIT = Counter("crm_sor_ratelimit_decisions", "Rate-limit decisions; fail_open_* let a request through "
                     "because Redis could not be asked", ["rule", "outcome"])
CRM_CALLS = Counter("crm_sor_crm_calls", "HTTP calls to CRMs, by provider and outcome (ok or error kind)",
                    ["provider", "outcome"])
CRM_CALL_SECONDS = Histogram("crm_sor_crm_call_seconds", "CRM call latency (request sent to headers received)",
                             ["provider"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))

_STARTED = "crm_sor_started"
# Error kinds by status, mirroring drivers/errors.py's taxonomy (Salesforce's 403 quota answer is counted
# as `forbidden`: the body that tells it apart is not read here).
_KINDS = {401: "auth", 403: "forbidden", 404: "not_found", 409: "conflict", 412: "conflict", 429: "rate_limited"}


def crm_outcome(status: int) -> str:
    if status < 400:
        return "ok"
    if status >= 500:
        return "unavailable"
    return _KINDS.get(status, "invalid_request")


def crm_call_metrics_hooks(provider: str) -> dict[str, list[Callable[..., Awaitable[None]]]]:
    """httpx `event_hooks` counting a driver's calls.

    Attach where drivers' clients are built: `httpx.AsyncClient(..., event_hooks=crm_call_metrics_hooks(slug))`.

    A call that never got an answer (connect error, timeout) is not seen by hooks; wrap the transport in
    `MeteredTransport` to count those too.
    """

    async def on_request(request: httpx.Request) -> None:
        request.extensions[_STARTED] = time.perf_counter()

    async def on_response(response: httpx.Response) -> None:
        CRM_CALLS.labels(provider, crm_outcome(response.status_code)).inc()
        started = response.request.extensions.get(_STARTED)
        if isinstance(started, float):
            CRM_CALL_SECONDS.labels(provider).observe(time.perf_counter() - started)

    return {"request": [on_request], "response": [on_response]}


class MeteredTransport(httpx.AsyncBaseTransport):
    """Counts CRM calls that failed below HTTP (`outcome="transport_error"`); the answer itself is the hooks'."""

    def __init__(self, inner: httpx.AsyncBaseTransport, provider: str) -> None:
        self._inner, self._provider = inner, provider

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._inner.handle_async_request(request)
        except httpx.TransportError:
            CRM_CALLS.labels(self._provider, "transport_error").inc()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()


@contextmanager
def worker_telemetry(config: MetricsSettings) -> Iterator[None]:
    """The worker's metric endpoints for the duration of the block (`crm-sor worker` wraps its run in it).

    The Temporal SDK runtime is made the process default, so every client the worker connects (including
    reconnects) exports the SDK metrics without the connection code knowing; enter this before connecting.
    """
    if config.temporal_port is not None:
        Runtime.set_default(temporal_runtime(config.host, config.temporal_port), error_if_already_set=False)
    server = serve_worker_metrics(config.host, config.worker_port) if config.worker_port is not None else None
    try:
        yield
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def serve_worker_metrics(host: str, port: int) -> WSGIServer:
    """The worker's `/metrics` (this process's counters) on a daemon thread; `shutdown()` + `server_close()`
    stop it."""
    server, _ = start_http_server(port, addr=host)
    log.info("worker metrics on http://%s:%d/metrics", host, port)
    return server


def temporal_runtime(host: str, port: int) -> Runtime:
    """A Temporal SDK runtime exporting the SDK's metrics (task latencies, slots, polls) in Prometheus format."""
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"{host}:{port}")))


def temporal_interceptors(tracing: bool, tracer: Any = None) -> list[Interceptor]:
    """Temporal's OpenTelemetry interceptor when tracing is on, else none.

    The interceptor's spans name workflow/activity types and ids only (never payloads), and it carries the
    trace context in Temporal headers, so an API request, the workflow it starts and the activities' CRM calls
    form one trace. `tracer` is a test's; otherwise the global tracer provider is used, and when nobody set one
    (no `opentelemetry-instrument`), an OTLP/HTTP exporter configured by the standard OTEL_* variables.
    """
    if not tracing:
        return []
    try:
        from temporalio.contrib.opentelemetry import TracingInterceptor
    except ImportError as exc:  # a clear start-up error rather than tracing silently off
        raise RuntimeError("CRM_TEMPORAL__TRACING needs the tracing extra: pip install 'crm-sor[tracing]'") from exc
    if tracer is None:
        _install_otlp_provider()
    return [TracingInterceptor(tracer)]


def _install_otlp_provider() -> None:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return  # the process already exports (auto-instrumentation, or an earlier connect)
    provider = TracerProvider(resource=Resource.create({"service.name": "crm-sor"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
