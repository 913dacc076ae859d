"""docker-compose.yml stays valid although no Docker engine runs on these machines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from cli.main import build_parser

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = ROOT / "docker-compose.yml"
CHECK = str(Path(sys.executable).parent / "check-jsonschema")


def validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHECK, "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=60)


def test_compose_file_follows_the_compose_spec() -> None:
    result = validate(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_compose_file_is_caught(tmp_path: Path) -> None:
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["api"]["ports"] = {"8000": 8000}  # ports must be a list
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))

    assert validate(path).returncode != 0


def test_every_crm_sor_service_runs_a_real_subcommand() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    commands = [service["command"] for service in services.values()
                if isinstance(service.get("command"), list) and service["command"][0] == "crm-sor"]
    assert {command[1] for command in commands} == {"api", "worker", "migrate"}
    for command in commands:
        build_parser().parse_args(command[1:])  # exits (SystemExit) on an unknown command or option
