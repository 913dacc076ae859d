"""erasure outcomes: when the provider purges an archived (soft-deleted) record by itself

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 11:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.base

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('erasure_outcomes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('provider_purge_after', store.base.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('erasure_outcomes', schema=None) as batch_op:
        batch_op.drop_column('provider_purge_after')
