"""`crm-sor migrate` and `crm-sor schema check`."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    migrate = subparsers.add_parser("migrate", help="bring the database to the latest schema")
    migrate.add_argument("--database-url", help="default: CRM_DATABASE_URL or the embedded SQLite file")
    migrate.set_defaults(handler=run_migrate)

    schema = subparsers.add_parser("schema", help="schema tools")
    actions = schema.add_subparsers(dest="schema_command", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="fail on unclassified tables or model/migration drift")
    check.set_defaults(handler=run_check)


def run_migrate(args: argparse.Namespace) -> int:
    from settings import get_settings
    from store.migrate import upgrade_to_head

    url = args.database_url or get_settings().database_url
    upgrade_to_head(url)
    print("database is at the latest schema")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from store.schema_gate import check_schema

    problems = check_schema()
    for problem in problems:
        print(f"schema gate: {problem}")
    if problems:
        return 1
    print("schema gate: every table is classified; models and migrations agree")
    return 0
