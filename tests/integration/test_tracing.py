"""Optional OpenTelemetry tracing through Temporal's interceptor: one trace from client start to activity."""

from __future__ import annotations

import uuid

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from telemetry import temporal_interceptors
from tests.support.trivial import TrivialWorkflow, trivial_step

# What Temporal's interceptor may put on a span: types and ids, never a payload.
ID_ATTRIBUTES = {"temporalWorkflowID", "temporalRunID", "temporalActivityID"}


def test_tracing_off_adds_no_interceptor() -> None:
    assert temporal_interceptors(False) == []


async def test_a_workflow_and_its_activity_share_the_callers_trace(temporal_env: WorkflowEnvironment) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    service = temporal_env.client.service_client.config
    client = await Client.connect(service.target_host, namespace=temporal_env.client.namespace,
                                  data_converter=pydantic_data_converter,
                                  interceptors=temporal_interceptors(True, provider.get_tracer("test")))
    queue = f"tracing-{uuid.uuid4()}"
    async with Worker(client, task_queue=queue, workflows=[TrivialWorkflow], activities=[trivial_step]):
        assert await client.execute_workflow(TrivialWorkflow.run, 41, id=f"trace-{uuid.uuid4()}",
                                             task_queue=queue) == 42

    spans = exporter.get_finished_spans()
    names = {span.name for span in spans}
    assert {"StartWorkflow:TrivialWorkflow", "RunWorkflow:TrivialWorkflow", "StartActivity:trivial_step",
            "RunActivity:trivial_step"} <= names
    assert len({span.context.trace_id for span in spans}) == 1  # one trace, propagated through Temporal headers
    for span in spans:
        assert set(span.attributes or {}) <= ID_ATTRIBUTES, span.name
