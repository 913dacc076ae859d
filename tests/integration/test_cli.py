"""The `crm-sor` command as a user runs it: real subprocesses, real servers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, inspect

from store.base import Base
from tests.support.databases import scratch_database
from tests.support.ports import free_port

pytestmark = pytest.mark.integration
CRM_SOR = str(Path(sys.executable).parent / "crm-sor")


@pytest.fixture
def scratch_database_url(tmp_path: Path) -> Iterator[str]:
    """An empty database: PostgreSQL when the suite runs on it, else a SQLite file."""
    with scratch_database(os.environ.get("CRM_TEST_DATABASE_URL"), tmp_path, migrate=False,
                          prefix="crm_sor_cli") as url:
        yield url


def test_migrate_brings_an_empty_database_to_head(scratch_database_url: str) -> None:
    result = subprocess.run([CRM_SOR, "migrate", "--database-url", scratch_database_url],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr

    engine = create_engine(scratch_database_url.replace("+aiosqlite", ""))  # a sync engine for inspect()
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables

    again = subprocess.run([CRM_SOR, "migrate", "--database-url", scratch_database_url],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr


def test_schema_check_passes_on_the_real_schema() -> None:
    result = subprocess.run([CRM_SOR, "schema", "check"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every table is classified" in result.stdout


def test_unknown_command_is_a_usage_error() -> None:
    result = subprocess.run([CRM_SOR, "frobnicate"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def wait_ready(url: str, process: subprocess.Popen[str], timeout: float = 90) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "crm-sor dev exited early"
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} never became ready")


def start_dev(workdir: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([CRM_SOR, "dev"], cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def stop(process: subprocess.Popen[str], workdir: Path) -> str:
    process.send_signal(signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        output += "\n[test] crm-sor dev did not stop within 60 s of Ctrl-C"
    finally:
        kill_leftover_temporal(workdir)
    return output


def kill_leftover_temporal(workdir: Path) -> None:
    """A failed stop must not leave a dev server running on the machine."""
    pid_file = workdir / ".crm-sor" / "temporal.pid"
    if not pid_file.exists():
        return
    try:
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_dev_stack_starts_answers_ready_stops_and_restarts_on_its_state(tmp_path: Path) -> None:
    api_port, temporal_port, ui_port = free_port(), free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("CRM_")}
    env.update({"CRM_API__PORT": str(api_port), "CRM_TEMPORAL__ADDRESS": f"127.0.0.1:{temporal_port}",
                "CRM_TEMPORAL__UI_PORT": str(ui_port)})

    first = start_dev(tmp_path, env)
    try:
        ready = wait_ready(f"http://127.0.0.1:{api_port}/readyz", first)
        assert ready.json()["checks"] == {"database": "ok", "temporal": "ok"}
        assert httpx.get(f"http://127.0.0.1:{ui_port}/", timeout=10).status_code == 200
    finally:
        output = stop(first, tmp_path)
    assert first.returncode == 0, output
    assert "did not stop" not in output
    assert f"http://localhost:{ui_port}" in output and "crm-sor dev stopped" in output
    state = tmp_path / ".crm-sor"
    assert (state / "temporal.db").exists() and (state / "crm-sor.db").exists()
    key = (state / "credential.key").read_text()

    second = start_dev(tmp_path, env)
    try:
        wait_ready(f"http://127.0.0.1:{api_port}/readyz", second)
    finally:
        output = stop(second, tmp_path)
    assert second.returncode == 0, output
    assert (state / "credential.key").read_text() == key  # same key: stored credentials stay readable
