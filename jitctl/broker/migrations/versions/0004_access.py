"""Where an active request's access leads (the address and port to connect to, and the
verify proof), so a requester without Azure rights can connect through the broker.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("access", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("access")
