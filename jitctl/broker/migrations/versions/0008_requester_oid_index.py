"""An index on the requester's object id, for "my requests" found by oid as well as by name
(a renamed person still finds what they asked before).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_requests_requester_oid", "requests", ["requester_oid", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_requests_requester_oid", table_name="requests")
