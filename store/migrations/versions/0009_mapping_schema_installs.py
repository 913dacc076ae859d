"""field mapping studio: introspected CRM schema per (tenant, object); installer reports per tenant

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.base

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = store.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table('tenant_crm_schema',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('object', sa.String(length=32), nullable=False),
    sa.Column('fields', sa.JSON(), nullable=False),
    sa.Column('fetched_at', UTC, nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'object'),
    info={'data_class': 'a'}
    )
    with op.batch_alter_table('tenant_crm_schema', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tenant_crm_schema_tenant_id'), ['tenant_id'], unique=False)
    op.create_table('tenant_crm_installs',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('report', sa.JSON(), nullable=False),
    sa.Column('checked_at', UTC, nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('tenant_id'),
    info={'data_class': 'a'}
    )


def downgrade() -> None:
    op.drop_table('tenant_crm_installs')
    with op.batch_alter_table('tenant_crm_schema', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tenant_crm_schema_tenant_id'))
    op.drop_table('tenant_crm_schema')
