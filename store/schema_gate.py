"""The schema gate: no table may exist without a data class, and models and migrations must agree.

Three checks, each returning human-readable problems (an empty list means the gate passes):
- every table in the models declares data class a/b/c/d; class (c) also declares `retention_days` and
  carries the sync columns;
- every `op.create_table(...)` in a migration declares `info={"data_class": ...}`;
- a scratch database migrated to head matches the models exactly (alembic's autogenerate diff).
"""

from __future__ import annotations

import ast
import tempfile
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, create_engine

from store.base import SYNC_COLUMNS
from store.migrate import MIGRATIONS_DIR, upgrade_to_head

DATA_CLASSES = {"a", "b", "c", "d"}


def classification_problems(metadata: MetaData) -> list[str]:
    problems = []
    for table in metadata.sorted_tables:
        data_class = table.info.get("data_class")
        if data_class not in DATA_CLASSES:
            problems.append(f"table {table.name!r} declares no data class (a/b/c/d) in its info")
            continue
        if data_class != "c":
            continue
        days = table.info.get("retention_days")
        if not isinstance(days, int) or days <= 0:
            problems.append(f"class-(c) table {table.name!r} declares no retention window (retention_days)")
        missing = [column for column in SYNC_COLUMNS if column not in table.c]
        if missing:
            problems.append(f"class-(c) table {table.name!r} lacks sync columns: {', '.join(missing)}")
    return problems


def migration_problems(versions_dir: Path = MIGRATIONS_DIR / "versions") -> list[str]:
    problems = []
    for path in sorted(versions_dir.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for call in ast.walk(tree):
            if not (isinstance(call, ast.Call) and _is_create_table(call.func)):
                continue
            table = call.args[0].value if call.args and isinstance(call.args[0], ast.Constant) else "?"
            if _declared_class(call) not in DATA_CLASSES:
                problems.append(f"{path.name}: create_table({table!r}) declares no data class in info=")
    return problems


def _is_create_table(func: ast.expr) -> bool:
    return isinstance(func, ast.Attribute) and func.attr == "create_table"


def _declared_class(call: ast.Call) -> object:
    for keyword in call.keywords:
        if keyword.arg == "info" and isinstance(keyword.value, ast.Dict):
            for key, value in zip(keyword.value.keys, keyword.value.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "data_class" and isinstance(value, ast.Constant):
                    return value.value
    return None


def drift_problems(metadata: MetaData) -> list[str]:
    """Migrate a scratch SQLite database to head and diff it against the models."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "gate.db"
        upgrade_to_head(f"sqlite+aiosqlite:///{path}")
        engine = create_engine(f"sqlite:///{path}")
        try:
            with engine.connect() as connection:
                context = MigrationContext.configure(connection, opts={"compare_type": True})
                diff = compare_metadata(context, metadata)
        finally:
            engine.dispose()
    return [f"models and migrations disagree: {_describe(entry)}" for entry in diff]


def _describe(entry: object) -> str:
    if isinstance(entry, tuple) and entry:
        op, *rest = entry
        names = [getattr(item, "name", None) or str(item) for item in rest[:2]]
        return f"{op} {' '.join(str(name) for name in names)}"
    if isinstance(entry, list):
        return "; ".join(_describe(item) for item in entry)
    return str(entry)


def check_schema(metadata: MetaData | None = None) -> list[str]:
    if metadata is None:
        import store.models  # noqa: F401  (registers the tables on Base.metadata)
        from store.base import Base

        metadata = Base.metadata
    return classification_problems(metadata) + migration_problems() + drift_problems(metadata)
