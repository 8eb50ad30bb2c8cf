"""An index on when requests were made, for the pages and lists that read every state newest
first (the history page, `broker list --all`): without it each page sorts the whole table.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_requests_created", "requests", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_requests_created", table_name="requests")
