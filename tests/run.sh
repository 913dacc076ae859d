#!/usr/bin/env bash
# The whole test suite from a fresh clone: virtualenv + install, lint, types, tests.
# PostgreSQL: set CRM_TEST_DATABASE_URL (a server URL; each run creates and drops its own database).
# Unset, a PostgreSQL answering on 127.0.0.1:5432 is used, else SQLite. Redis must answer at CRM_TEST_REDIS_URL (default 127.0.0.1:6379/15).
set -euo pipefail
cd "$(dirname "$0")/.."
# Prefer the local PostgreSQL when one answers, so a plain run exercises the production database.
if [ -z "${CRM_TEST_DATABASE_URL:-}" ] && command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then
  export CRM_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/pytest "$@"
