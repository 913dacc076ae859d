"""purge: a partial index per class-(c) table on purge_after, over the rows the purge guard can let go

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ('conversations', 'messages', 'customers', 'leads', 'qualification_states', 'appointments', 'cases')
WHERE = "sync_state = 'synced' AND crm_external_id IS NOT NULL AND synced_at IS NOT NULL"


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(f'ix_{table}_purgeable', ['purge_after'], unique=False,
                                  postgresql_where=sa.text(WHERE), sqlite_where=sa.text(WHERE))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f'ix_{table}_purgeable')
