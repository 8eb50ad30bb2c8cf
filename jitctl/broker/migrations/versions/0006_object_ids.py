"""Who asked and who approved, by the token's object id (`oid`, with the tenant's `tid`) as
well as by name: a user principal name or preferred_username can change or be given to someone
else, so self-approval and distinct approvers are decided on the object id when there is one.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
# 0006 is another change made at the same time: whichever is merged second revises the other
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("requester_oid", sa.String(64)))
        batch.add_column(sa.Column("requester_tid", sa.String(64)))
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("approver_oid", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("approver_oid")
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("requester_tid")
        batch.drop_column("requester_oid")
