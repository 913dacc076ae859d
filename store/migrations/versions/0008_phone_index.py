"""phone index: keyed hash of a normalized phone -> CRM record id, for voice-grade lookups (class c, TTL)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.base

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = store.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table('phone_index',
    sa.Column('provider', sa.String(length=64), nullable=False),
    sa.Column('object', sa.String(length=16), nullable=False),
    sa.Column('phone_hash', sa.String(length=64), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('created_at', UTC, nullable=False),
    sa.Column('updated_at', UTC, nullable=False),
    sa.Column('sync_state', sa.String(length=16), nullable=False),
    sa.Column('crm_external_id', sa.String(length=255), nullable=True),
    sa.Column('synced_at', UTC, nullable=True),
    sa.Column('sync_attempts', sa.Integer(), nullable=False),
    sa.Column('last_sync_error', sa.Text(), nullable=True),
    sa.Column('purge_after', UTC, nullable=True),
    sa.Column('retry_at', UTC, nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'provider', 'phone_hash', name='uq_phone_index_phone'),
    info={'data_class': 'c', 'retention_days': 30}
    )
    with op.batch_alter_table('phone_index', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_phone_index_purge_after'), ['purge_after'], unique=False)
        batch_op.create_index(batch_op.f('ix_phone_index_sync_state'), ['sync_state'], unique=False)
        batch_op.create_index(batch_op.f('ix_phone_index_tenant_id'), ['tenant_id'], unique=False)
        batch_op.create_index('ix_phone_index_record', ['tenant_id', 'provider', 'crm_external_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('phone_index', schema=None) as batch_op:
        batch_op.drop_index('ix_phone_index_record')
        batch_op.drop_index(batch_op.f('ix_phone_index_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_phone_index_sync_state'))
        batch_op.drop_index(batch_op.f('ix_phone_index_purge_after'))
    op.drop_table('phone_index')
