"""Transport-level faults for driver calls: hold a matching request's response, or lose it after the CRM
applied it. Wrap a sandbox transport with `Faults(...).wrap` (SandboxDriverProvider's `wrap=`).

    faults = Faults()
    hold = faults.hold("POST", "/crm/v3/objects/contacts/batch/upsert")   # the next create waits (already applied)
    await hold.reached.wait(); ...; hold.release.set()
    faults.lose("PATCH", "/crm/v3/objects/notes/", after=1)   # the 2nd note update lands, its answer is lost
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx


@dataclass
class Hold:
    method: str
    path_prefix: str
    reached: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Loss:
    method: str
    path_prefix: str
    after: int = 0  # matching requests to let through first
    happened: asyncio.Event = field(default_factory=asyncio.Event)


class Faults:
    """One-shot faults, each matched by method and path (a path ending in "/" matches as a prefix), consumed by
    the first matching request."""

    def __init__(self) -> None:
        self._holds: list[Hold] = []
        self._losses: list[Loss] = []

    def hold(self, method: str, path_prefix: str) -> Hold:
        hold = Hold(method, path_prefix)
        self._holds.append(hold)
        return hold

    def lose(self, method: str, path_prefix: str, *, after: int = 0) -> Loss:
        loss = Loss(method, path_prefix, after)
        self._losses.append(loss)
        return loss

    def wrap(self, inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        return _FaultyTransport(inner, self)

    def _take(self, faults: list[Hold] | list[Loss], request: httpx.Request) -> Hold | Loss | None:
        for fault in faults:
            path, wanted = request.url.path, fault.path_prefix
            if request.method == fault.method and (path.startswith(wanted) if wanted.endswith("/") else path == wanted):
                if isinstance(fault, Loss) and fault.after > 0:
                    fault.after -= 1
                    return None
                faults.remove(fault)  # type: ignore[arg-type]
                return fault
        return None


class _FaultyTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, faults: Faults) -> None:
        self.inner, self.faults = inner, faults

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        hold = self.faults._take(self.faults._holds, request)
        loss = self.faults._take(self.faults._losses, request)
        response = await self.inner.handle_async_request(request)
        await response.aread()
        if isinstance(hold, Hold):
            hold.reached.set()
            await hold.release.wait()
        if isinstance(loss, Loss):
            loss.happened.set()
            raise httpx.ReadTimeout("response lost after the provider applied the request", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
