"""inbound CRM events: kind, occurred_at, changed field names, source; triggers, consent, do-not-call,
outbound policies, call requests, poll cursors

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.base

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = store.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table('inbound_crm_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), server_default='updated', nullable=False))
        batch_op.add_column(sa.Column('occurred_at', UTC, nullable=True))
        batch_op.add_column(sa.Column('changed_fields', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('source', sa.String(length=16), server_default='webhook', nullable=False))
        batch_op.create_index('ix_inbound_events_status', ['status', 'received_at'], unique=False)
    op.execute("UPDATE inbound_crm_events SET changed_fields = '[]' WHERE changed_fields IS NULL")
    with op.batch_alter_table('inbound_crm_events', schema=None) as batch_op:
        batch_op.alter_column('changed_fields', existing_type=sa.JSON(), nullable=False)

    op.create_table('outbound_triggers',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('object', sa.String(length=64), nullable=False),
    sa.Column('kinds', sa.JSON(), nullable=False),
    sa.Column('conditions', sa.JSON(), nullable=False),
    sa.Column('purpose', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('within_minutes', sa.Integer(), nullable=False),
    sa.Column('max_defer_hours', sa.Integer(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('created_at', UTC, nullable=False),
    sa.Column('updated_at', UTC, nullable=False),
    sa.PrimaryKeyConstraint('id'),
    info={'data_class': 'a'}
    )
    with op.batch_alter_table('outbound_triggers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbound_triggers_tenant_id'), ['tenant_id'], unique=False)
    op.create_table('outbound_policies',
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('window_start', sa.String(length=5), nullable=False),
    sa.Column('window_end', sa.String(length=5), nullable=False),
    sa.Column('daily_attempt_cap', sa.Integer(), nullable=False),
    sa.Column('dialer_url', sa.Text(), nullable=True),
    sa.Column('updated_at', UTC, nullable=False),
    sa.PrimaryKeyConstraint('tenant_id'),
    info={'data_class': 'a'}
    )
    op.create_table('outbound_consents',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('person_hash', sa.String(length=64), nullable=False),
    sa.Column('purpose', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=200), nullable=False),
    sa.Column('granted_at', UTC, nullable=False),
    sa.Column('revoked_at', UTC, nullable=True),
    sa.Column('revoked_source', sa.String(length=200), nullable=True),
    sa.Column('updated_at', UTC, nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'person_hash', 'purpose', 'channel'),
    info={'data_class': 'a'}
    )
    op.create_table('outbound_do_not_call',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('person_hash', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=200), nullable=False),
    sa.Column('created_at', UTC, nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'person_hash'),
    info={'data_class': 'a'}
    )
    op.create_table('outbound_call_requests',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('event_row_id', sa.Uuid(), nullable=False),
    sa.Column('trigger_id', sa.Uuid(), nullable=False),
    sa.Column('provider', sa.String(length=64), nullable=False),
    sa.Column('object', sa.String(length=64), nullable=False),
    sa.Column('external_id', sa.String(length=255), nullable=False),
    sa.Column('purpose', sa.String(length=64), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('person_hash', sa.String(length=64), nullable=True),
    sa.Column('time_zones', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=True),
    sa.Column('not_before', UTC, nullable=True),
    sa.Column('deadline', UTC, nullable=True),
    sa.Column('created_at', UTC, nullable=False),
    sa.Column('placed_at', UTC, nullable=True),
    sa.Column('delivered_at', UTC, nullable=True),
    sa.Column('pulled_at', UTC, nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_row_id'),
    info={'data_class': 'b'}
    )
    with op.batch_alter_table('outbound_call_requests', schema=None) as batch_op:
        batch_op.create_index('ix_call_requests_person', ['tenant_id', 'person_hash', 'placed_at'], unique=False)
    op.create_table('crm_poll_cursors',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('object', sa.String(length=64), nullable=False),
    sa.Column('since', UTC, nullable=False),
    sa.Column('updated_at', UTC, nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tenant_id', 'object'),
    info={'data_class': 'b'}
    )


def downgrade() -> None:
    op.drop_table('crm_poll_cursors')
    with op.batch_alter_table('outbound_call_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_call_requests_person')
    op.drop_table('outbound_call_requests')
    op.drop_table('outbound_do_not_call')
    op.drop_table('outbound_consents')
    op.drop_table('outbound_policies')
    with op.batch_alter_table('outbound_triggers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbound_triggers_tenant_id'))
    op.drop_table('outbound_triggers')
    with op.batch_alter_table('inbound_crm_events', schema=None) as batch_op:
        batch_op.drop_index('ix_inbound_events_status')
        batch_op.drop_column('source')
        batch_op.drop_column('changed_fields')
        batch_op.drop_column('occurred_at')
        batch_op.drop_column('kind')
