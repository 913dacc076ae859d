"""erasure: sealed identifiers and progress on requests, outcome source/attempts, erasure_holds

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.base

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('erasure_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('workflow_id', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('sealed_identifiers', sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column('error', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('local_rows_scrubbed', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('updated_at', store.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_erasure_requests_subject', ['tenant_id', 'subject_hash'], unique=False)

    with op.batch_alter_table('erasure_outcomes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))

    op.create_table('erasure_holds',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('request_id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('table_name', sa.String(length=64), nullable=False),
    sa.Column('row_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', store.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['erasure_requests.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('request_id', 'row_id'),
    info={'data_class': 'b'}
    )
    with op.batch_alter_table('erasure_holds', schema=None) as batch_op:
        batch_op.create_index('ix_erasure_holds_tenant_row', ['tenant_id', 'row_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('erasure_holds', schema=None) as batch_op:
        batch_op.drop_index('ix_erasure_holds_tenant_row')
    op.drop_table('erasure_holds')
    with op.batch_alter_table('erasure_outcomes', schema=None) as batch_op:
        batch_op.drop_column('attempts')
        batch_op.drop_column('source')
    with op.batch_alter_table('erasure_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_erasure_requests_subject')
        batch_op.drop_column('updated_at')
        batch_op.drop_column('local_rows_scrubbed')
        batch_op.drop_column('error')
        batch_op.drop_column('sealed_identifiers')
        batch_op.drop_column('workflow_id')
