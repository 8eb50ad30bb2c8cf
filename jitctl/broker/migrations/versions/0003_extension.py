"""An extension waiting to be made true in Azure: the end asked for, and the replica sending
its initiate. `ends_at` stays Azure's granted end until Azure takes the new initiate, so an
extension Azure never granted is never shown as time left.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from jitctl.broker.models import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("extend_to", UtcDateTime))
        batch.add_column(sa.Column("extend_claimed_by", sa.String(200)))
        batch.add_column(sa.Column("extend_claimed_at", UtcDateTime))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        for name in ("extend_claimed_at", "extend_claimed_by", "extend_to"):
            batch.drop_column(name)
