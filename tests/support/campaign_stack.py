"""The deployment a full fault campaign runs against, every part a real OS process on loopback.

- PostgreSQL, Redis and a Temporal dev server of its own (tests/support/services.py), so they can be restarted;
- `crm-sor api` and `crm-sor worker` processes configured only through `CRM_*` variables, as in production
  (credentials from the vault, CRM calls through the SSRF-guarded transport with the dev/test loopback allowance);
- the CRM sandboxes, served from this process (serve_in_thread) with a middleware that knows which client ports
  have a request in flight, so a worker can be SIGKILLed while it is talking to a CRM (`kill_worker`).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from sandboxes.serve import ServedSandbox, serve_in_thread
from tests.support.ports import free_port
from tests.support.services import Postgres, Process, Redis, TemporalServer, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
CRM_SOR = [sys.executable, "-m", "cli.main"]
KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="  # a throwaway credential key for the run's vault
ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
                   Awaitable[None]]


class InFlight:
    """ASGI middleware counting the requests being handled per client port (the caller's side of the socket)."""

    def __init__(self, app: ASGIApp, ports: Counter[int]) -> None:
        self.app, self.ports = app, ports

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        client = scope.get("client")
        if scope["type"] != "http" or not client:
            await self.app(scope, receive, send)
            return
        self.ports[client[1]] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.ports[client[1]] -= 1
            if self.ports[client[1]] <= 0:
                del self.ports[client[1]]


def owner_of(port: int, pids: list[int]) -> int | None:
    """Which of `pids` holds the loopback TCP socket whose local port is `port` (Linux /proc), or None."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return pid
    return None


@dataclass
class Sandbox:
    app: Starlette
    served: ServedSandbox
    in_flight: Counter[int]

    @property
    def state(self) -> Any:
        return self.app.state.sandbox

    @property
    def url(self) -> str:
        return self.served.base_url


def serve_sandbox(app: Starlette) -> Sandbox:
    in_flight: Counter[int] = Counter()
    app.add_middleware(InFlight, ports=in_flight)
    return Sandbox(app, serve_in_thread(app), in_flight)


@dataclass
class Stack:
    """Services, CRM processes and sandboxes of one campaign run; `close()` stops every process it started."""

    scratch: Path
    postgres: Postgres
    redis: Redis
    temporal: TemporalServer
    sandboxes: dict[str, Sandbox]
    api_port: int = field(default_factory=free_port)
    api: Process | None = None
    workers: list[Process] = field(default_factory=list)
    kills: Counter[str] = field(default_factory=Counter)
    _spawned: int = 0

    @classmethod
    def start(cls, sandboxes: dict[str, Starlette], scratch: Path | None = None) -> Stack:
        scratch = scratch or Path(tempfile.mkdtemp(prefix="crm-sor-campaign-"))
        scratch.mkdir(parents=True, exist_ok=True)
        stack = cls(scratch, Postgres(), Redis(scratch), TemporalServer(scratch / "temporal.db"),
                    {slug: serve_sandbox(app) for slug, app in sandboxes.items()})
        stack.postgres.start()
        stack.redis.start()
        stack.temporal.start()
        subprocess.run(["runuser", "-u", "postgres", "--", "createdb", "-h", "127.0.0.1", "-p",
                        str(stack.postgres.port), "crm"] if os.geteuid() == 0 else
                       ["createdb", "-h", "127.0.0.1", "-p", str(stack.postgres.port), "-U", "postgres", "crm"],
                       check=True, timeout=60)
        stack.cli("migrate")
        return stack

    @property
    def database_url(self) -> str:
        return self.postgres.url.rsplit("/", 1)[0] + "/crm"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        """Everything the processes know, as a deployment would set it: environment variables only."""
        hubspot = self.sandboxes.get("hubspot")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")} | {
            "CRM_ENV": "test", "CRM_DATABASE_URL": self.database_url, "CRM_REDIS_URL": self.redis.url,
            "CRM_TEMPORAL__ADDRESS": self.temporal.address, "CRM_CREDENTIAL_ENCRYPTION_KEY": KEY,
            "CRM_OUTBOUND__ALLOW_LOOPBACK": "true", "CRM_OUTBOUND__TIMEOUT_SECONDS": "5",
            "CRM_PUBLIC_BASE_URL": self.api_url, "CRM_API__PORT": str(self.api_port), "PYTHONUNBUFFERED": "1"}
        if hubspot is not None:
            env |= {"CRM_OAUTH_CLIENTS__HUBSPOT__CLIENT_ID": hubspot.state.tokens.client_id,
                    "CRM_OAUTH_CLIENTS__HUBSPOT__CLIENT_SECRET": hubspot.state.tokens.client_secret}
        return env

    def cli(self, *args: str) -> str:
        done = subprocess.run([*CRM_SOR, *args], env=self.env(), cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"crm-sor {args[0]} failed: {done.stderr[-2000:]}")
        return done.stdout

    def _process(self, kind: str, *args: str) -> Process:
        self._spawned += 1
        process = Process(kind, self.scratch / f"{kind}-{self._spawned}.log")
        process.spawn([*CRM_SOR, kind, *args], env=self.env(), cwd=ROOT)
        return process

    def start_api(self) -> None:
        self.api = self._process("api", "--host", "127.0.0.1", "--port", str(self.api_port))
        wait_for_port(self.api_port, process=self.api.popen, what="crm-sor api", timeout=120)

    def start_worker(self, timeout: float = 120) -> None:
        worker = self._process("worker")
        deadline = time.monotonic() + timeout
        while b"worker polling task queue" not in worker.log.read_bytes():  # its own log file
            if worker.popen is None or worker.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"crm-sor worker did not start: {worker.log.read_text()[-2000:]}")
            time.sleep(0.2)
        self.workers.append(worker)

    def kill_api(self) -> None:
        assert self.api is not None
        self.api.kill()
        self.kills["api"] += 1

    def kill_worker(self, rng: random.Random, patience: float = 20.0) -> None:
        """SIGKILL a worker while it has a CRM request in flight (up to `patience` s of looking; else any)."""
        pids = {w.pid: w for w in self.workers if w.pid is not None}
        deadline = time.monotonic() + patience
        victim = None
        while victim is None and time.monotonic() < deadline:
            try:  # the sandboxes' threads change the counters while we read them
                ports = [p for sandbox in self.sandboxes.values() for p in list(sandbox.in_flight)]
            except RuntimeError:
                continue
            rng.shuffle(ports)
            for port in ports:
                pid = owner_of(port, list(pids))
                if pid is not None:
                    victim = pids[pid]
                    break
            else:
                time.sleep(0.02)
        self.kills["worker mid-request" if victim is not None else "worker idle"] += 1
        victim = victim or rng.choice(list(pids.values()))
        victim.kill()
        self.workers.remove(victim)

    def close(self) -> None:
        for process in [*self.workers, *([self.api] if self.api else [])]:
            process.kill()  # the run is over: nothing left to drain
        self.temporal.stop()
        self.redis.stop()
        self.postgres.remove()
        for sandbox in self.sandboxes.values():
            sandbox.served.stop()


def operator_client(stack: Stack) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=stack.api_url, timeout=30, follow_redirects=True)
