"""Admin commands start fast because they import only what they use (measured in bench/cli_startup.py; here the
structure that makes it so: which heavy packages a command loads, in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from store.migrate import upgrade_to_head

PROBE = """
import sys
from cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("MODULES", " ".join(sorted({name.split(".")[0] for name in sys.modules})))
"""
SERVER_STACK = {"temporalio", "uvicorn", "worker", "boto3", "jinja2", "redis", "prometheus_client"}


def _loaded(argv: list[str], cwd: Path) -> set[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=cwd, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[3])},
                          check=True)
    return set(done.stdout.rsplit("MODULES", 1)[1].split())  # after the command's own output


def test_help_loads_no_framework(tmp_path: Path) -> None:
    assert _loaded(["--help"], tmp_path) & (SERVER_STACK | {"sqlalchemy", "httpx", "starlette", "pydantic"}) == set()


@pytest.mark.parametrize("argv", [["tenant", "list"], ["token", "--role", "operator"]])
def test_admin_commands_load_no_server_stack(tmp_path: Path, argv: list[str]) -> None:
    upgrade_to_head(f"sqlite+aiosqlite:///{tmp_path / '.crm-sor' / 'crm-sor.db'}")
    assert _loaded(argv, tmp_path) & SERVER_STACK == set()
