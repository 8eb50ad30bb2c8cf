"""The worker's follow-ups: a revoked request's allow rules removed (claimed by one replica),
and which receivers already took a notification (so a retry reaches only those that failed).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from jitctl.broker.models import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("release_claimed_by", sa.String(200)))
        batch.add_column(sa.Column("release_claimed_at", UtcDateTime))
        batch.add_column(sa.Column("released_at", UtcDateTime))
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("delivered", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("delivered")
    with op.batch_alter_table("requests") as batch:
        for name in ("released_at", "release_claimed_at", "release_claimed_by"):
            batch.drop_column(name)
