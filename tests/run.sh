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
# The console's browser tests drive Debian's Chromium (Playwright's own browser download cannot work offline).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing chromium (apt) for the console's browser tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is missing: the console's browser tests will fail (as root: apt-get install -y chromium)" >&2
  fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev]'
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/pytest "$@"
