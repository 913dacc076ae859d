"""CLI start-up: wall time of admin commands, as a user runs them (a new process each time).

    .venv/bin/python bench/cli_startup.py [--runs 10] [--compare PATH]

Runs each command in a scratch directory with a migrated SQLite database and prints min / median / max.
`--compare PATH` runs the same commands with another checkout's code first on PYTHONPATH (e.g. an export of
the commit before lazy imports: `git archive 9afd861 | tar -x -C /tmp/base`), for a before/after figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMMANDS = [["--help"], ["tenant", "list"], ["token", "--role", "operator"], ["tenant", "create", "--name", "Bench",
                                                                              "--provider", "hubspot"]]


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cli.main", *argv], cwd=cwd, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def measure(code: Path, runs: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory() as scratch:
        cwd = Path(scratch)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")} | {"PYTHONPATH": str(code)}
        subprocess.run([sys.executable, "-m", "cli.main", "migrate"], cwd=cwd, env=env, check=True,
                       capture_output=True)
        return {" ".join(argv): [timed(argv, cwd, env) for _ in range(runs)] for argv in COMMANDS}


def report(label: str, figures: dict[str, list[float]]) -> None:
    print(label)
    for command, times in figures.items():
        print(f"  crm-sor {command:<45} min {min(times):.2f} s  median {statistics.median(times):.2f} s  "
              f"max {max(times):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--compare", type=Path, help="another checkout to measure first")
    args = parser.parse_args()
    if args.compare:
        report(f"before ({args.compare})", measure(args.compare, args.runs))
    report(f"this checkout ({REPO})", measure(REPO, args.runs))
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
