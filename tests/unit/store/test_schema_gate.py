from __future__ import annotations

from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, String, Table

from store.models import Base
from store.schema_gate import check_schema, classification_problems, drift_problems, migration_problems


def copy_of_models() -> MetaData:
    metadata = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(metadata)
    return metadata


def test_real_schema_passes_the_gate() -> None:
    assert check_schema() == []


def test_an_unclassified_table_fails_the_gate() -> None:
    metadata = copy_of_models()
    Table("call_recordings", metadata, Column("id", Integer, primary_key=True), Column("url", String))

    problems = check_schema(metadata)

    assert "table 'call_recordings' declares no data class (a/b/c/d) in its info" in problems
    # The migrations do not create it either: the gate also reports the drift.
    assert any("call_recordings" in problem and "disagree" in problem for problem in problems)


def test_a_content_table_without_window_or_sync_columns_fails() -> None:
    metadata = MetaData()
    Table("voicemails", metadata, Column("id", Integer, primary_key=True), info={"data_class": "c"})

    problems = classification_problems(metadata)

    assert "class-(c) table 'voicemails' declares no retention window (retention_days)" in problems
    assert any(problem.startswith("class-(c) table 'voicemails' lacks sync columns") for problem in problems)


def test_a_migration_that_creates_an_unclassified_table_fails(tmp_path: Path) -> None:
    (tmp_path / "0099_sneaky.py").write_text(
        "from alembic import op\nimport sqlalchemy as sa\n\n"
        "def upgrade():\n    op.create_table('sneaky', sa.Column('id', sa.Integer(), primary_key=True))\n"
        "    op.create_table('fine', sa.Column('id', sa.Integer()), info={'data_class': 'b'})\n"
    )

    assert migration_problems(tmp_path) == ["0099_sneaky.py: create_table('sneaky') declares no data class in info="]


def test_every_real_migration_declares_classes() -> None:
    assert migration_problems() == []


def test_a_model_column_missing_from_migrations_is_drift() -> None:
    metadata = copy_of_models()
    metadata.tables["tenants"].append_column(Column("timezone", String(64)))

    assert any("tenants" in problem for problem in drift_problems(metadata))
