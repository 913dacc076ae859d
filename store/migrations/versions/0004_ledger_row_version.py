"""ledger: the row version each mirror write carried; the outbox loses its turn key (each row has its own)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 08:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.base

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('idempotency_ledger', schema=None) as batch_op:
        batch_op.add_column(sa.Column('row_updated_at', store.base.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table('mirror_outbox', schema=None) as batch_op:
        batch_op.drop_column('idempotency_key')


def downgrade() -> None:
    with op.batch_alter_table('mirror_outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('idempotency_key', sa.String(length=200), nullable=True))
    with op.batch_alter_table('idempotency_ledger', schema=None) as batch_op:
        batch_op.drop_column('row_updated_at')
