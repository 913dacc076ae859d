#!/usr/bin/env bash
# The whole test suite from a fresh clone: virtualenv + install, lint, types, tests.
# PostgreSQL: set CRM_TEST_DATABASE_URL (a server URL; each run creates and drops its own database).
# Without it the tests use SQLite. Redis must answer at CRM_TEST_REDIS_URL (default 127.0.0.1:6379/15).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/pytest "$@"
