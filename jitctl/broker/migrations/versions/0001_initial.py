"""The broker's first schema: requests, approvals, events (hash-chained), chain head, outbox.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from jitctl.broker.models import GENESIS, STATES, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "requests",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("requester", sa.String(320), nullable=False),
        sa.Column("requester_groups", sa.Text, nullable=False),
        sa.Column("vm_id", sa.String(512), nullable=False),
        sa.Column("ports", sa.Text, nullable=False),
        sa.Column("source", sa.String(64)),
        sa.Column("duration_s", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("ticket", sa.String(200)),
        sa.Column("break_glass", sa.Boolean, nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("min_approvals", sa.Integer, nullable=False),
        sa.Column("approver_sets", sa.Text, nullable=False),
        sa.Column("rules", sa.Text, nullable=False),
        sa.Column("pending_until", UtcDateTime, nullable=False),
        sa.Column("ends_at", UtcDateTime),
        sa.Column("claimed_by", sa.String(200)),
        sa.Column("claimed_at", UtcDateTime),
        sa.CheckConstraint(f"state IN ({STATES})", name="ck_requests_state"),
    )
    op.create_index("ix_requests_state_created", "requests", ["state", "created_at"])
    op.create_index("ix_requests_requester", "requests", ["requester", "created_at"])
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(36), sa.ForeignKey("requests.id"), nullable=False),
        sa.Column("approver", sa.String(320), nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("comment", sa.Text),
        sa.UniqueConstraint("request_id", "approver", name="uq_approvals_request_approver"),
    )
    op.create_table(
        "events",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("request_id", sa.String(36)),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("from_state", sa.String(20)),
        sa.Column("to_state", sa.String(20)),
        sa.Column("reason", sa.Text),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_events_request", "events", ["request_id"])
    op.create_index("ix_events_at", "events", ["at"])
    head = op.create_table(
        "chain_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS}])
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("request_id", sa.String(36)),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UtcDateTime, nullable=False),
        sa.Column("claimed_by", sa.String(200)),
        sa.Column("claimed_at", UtcDateTime),
        sa.Column("sent_at", UtcDateTime),
        sa.Column("last_error", sa.Text),
    )
    op.create_index("ix_outbox_due", "outbox", ["sent_at", "next_attempt_at"])


def downgrade() -> None:
    for table in ("outbox", "chain_head", "events", "approvals", "requests"):
        op.drop_table(table)
