"""tenant mirror: per-row retry time and an index of unsynced rows, sync states retrying/blocked, one open incident
per (tenant, failure kind)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.base

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONTENT = ('customers', 'conversations', 'messages', 'leads', 'qualification_states', 'appointments', 'cases')


def upgrade() -> None:
    for table in CONTENT:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('retry_at', store.base.UTCDateTime(timezone=True), nullable=True))
            batch_op.create_index(f'ix_{table}_unsynced', ['tenant_id', 'created_at'], unique=False,
                                  postgresql_where=sa.text("sync_state <> 'synced'"),
                                  sqlite_where=sa.text("sync_state <> 'synced'"))
        # `failed` said neither whether time or a person fixes it: time (the mirror retries; auth is re-learned).
        op.execute(sa.text(f"UPDATE {table} SET sync_state = 'retrying' WHERE sync_state = 'failed'"))
    # Per-row incidents give way to one per (tenant, failure kind): the mirror reopens them aggregated.
    op.execute(sa.text("UPDATE incidents SET status = 'resolved', resolved_at = CURRENT_TIMESTAMP "
                       "WHERE status = 'open' AND kind = 'crm_sync_failure'"))
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failure_kind', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('row_count', sa.Integer(), server_default='0', nullable=False))
        batch_op.drop_index('uq_incidents_open_row', postgresql_where=sa.text("status = 'open'"),
                            sqlite_where=sa.text("status = 'open'"))
        batch_op.create_index('uq_incidents_open_kind', ['tenant_id', 'kind', 'failure_kind'], unique=True,
                              postgresql_where=sa.text("status = 'open'"), sqlite_where=sa.text("status = 'open'"))


def downgrade() -> None:
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.drop_index('uq_incidents_open_kind', postgresql_where=sa.text("status = 'open'"),
                            sqlite_where=sa.text("status = 'open'"))
        batch_op.create_index('uq_incidents_open_row', ['tenant_id', 'kind', 'table_name', 'row_id'], unique=True,
                              postgresql_where=sa.text("status = 'open'"), sqlite_where=sa.text("status = 'open'"))
        batch_op.drop_column('row_count')
        batch_op.drop_column('failure_kind')
    for table in CONTENT:
        op.execute(sa.text(f"UPDATE {table} SET sync_state = 'failed' WHERE sync_state IN ('retrying', 'blocked')"))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f'ix_{table}_unsynced', postgresql_where=sa.text("sync_state <> 'synced'"),
                                sqlite_where=sa.text("sync_state <> 'synced'"))
            batch_op.drop_column('retry_at')
