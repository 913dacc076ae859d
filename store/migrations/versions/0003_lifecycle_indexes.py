"""lifecycle: one open incident per row (partial unique index), outbox lookup by row

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 13:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.create_index('uq_incidents_open_row', ['tenant_id', 'kind', 'table_name', 'row_id'], unique=True,
                              postgresql_where=sa.text("status = 'open'"), sqlite_where=sa.text("status = 'open'"))
    with op.batch_alter_table('mirror_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_outbox_row', ['table_name', 'row_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('mirror_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_row')
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.drop_index('uq_incidents_open_row')
