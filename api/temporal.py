"""The Temporal client, connected lazily so the API keeps accepting writes while Temporal is away."""

from __future__ import annotations

import asyncio

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from settings import TemporalSettings
from telemetry import temporal_interceptors


async def connect_temporal(config: TemporalSettings) -> Client:
    # A client's interceptors also apply to workers built on it: one switch traces the API and the worker.
    return await Client.connect(config.address, namespace=config.namespace, data_converter=pydantic_data_converter,
                                interceptors=temporal_interceptors(config.tracing))


class TemporalGateway:
    """Hands out one shared client; retries the connection on the next call after a failure."""

    def __init__(self, config: TemporalSettings, client: Client | None = None) -> None:
        self.config = config
        self._client = client
        self._lock = asyncio.Lock()

    async def client(self) -> Client:
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client = await asyncio.wait_for(connect_temporal(self.config), timeout=5)
        return self._client

    async def healthy(self) -> bool:
        try:
            client = await self.client()
            return await asyncio.wait_for(client.service_client.check_health(), timeout=2)
        except Exception:  # any failure means "not ready"; /readyz reports it
            return False
