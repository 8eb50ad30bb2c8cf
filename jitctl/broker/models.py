"""The broker's tables (SQLAlchemy Core). The migrations in migrations/versions create them;
a test checks that the migrated schema and these definitions agree."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from jitctl.broker.lifecycle import State

GENESIS = "0" * 64  # the hash before the first event


class UtcDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC on every database (SQLite keeps no offset), read back aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the broker's store: pass an aware one")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


metadata = MetaData()
STATES = ", ".join(f"'{s.value}'" for s in State)

requests = Table(
    "requests",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("state", String(20), nullable=False),
    Column("version", Integer, nullable=False),
    Column("requester", String(320), nullable=False),  # upn, lower-case
    Column("requester_groups", Text, nullable=False),  # JSON list, as the token had them
    Column("vm_id", String(512), nullable=False),
    Column("ports", Text, nullable=False),  # JSON list of numbers
    Column("source", String(64)),
    Column("duration_s", Integer, nullable=False),
    Column("reason", Text),
    Column("ticket", String(200)),
    Column("break_glass", Boolean, nullable=False),
    Column("outcome", String(32), nullable=False),  # what the rules said
    Column("min_approvals", Integer, nullable=False),
    Column("approver_sets", Text, nullable=False),  # JSON list of lists of principals
    Column("rules", Text, nullable=False),  # JSON list of file:line labels
    Column("pending_until", UtcDateTime, nullable=False),
    Column("ends_at", UtcDateTime),
    Column("claimed_by", String(200)),
    Column("claimed_at", UtcDateTime),
    # revoked: the replica removing the JIT allow rules, and when it had (migration 0002)
    Column("release_claimed_by", String(200)),
    Column("release_claimed_at", UtcDateTime),
    Column("released_at", UtcDateTime),
    # active: an extension decided but not yet granted by Azure, and who sends it (0003)
    Column("extend_to", UtcDateTime),
    Column("extend_claimed_by", String(200)),
    Column("extend_claimed_at", UtcDateTime),
    # active: where to connect and the verify proof, as JSON (migration 0004)
    Column("access", Text),
    # the requester's object id and tenant in the token (oid, tid; migration 0006)
    Column("requester_oid", String(64)),
    Column("requester_tid", String(64)),
    CheckConstraint(f"state IN ({STATES})", name="ck_requests_state"),
    Index("ix_requests_state_created", "state", "created_at"),
    Index("ix_requests_requester", "requester", "created_at"),
    Index("ix_requests_created", "created_at"),  # every state, newest first (0005)
    Index("ix_requests_requester_oid", "requester_oid", "created_at"),  # mine, by oid (0008)
)

approvals = Table(
    "approvals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(36), ForeignKey("requests.id"), nullable=False),
    Column("approver", String(320), nullable=False),  # upn, lower-case
    Column("at", UtcDateTime, nullable=False),
    Column("comment", Text),
    Column("approver_oid", String(64)),  # the token's oid (migration 0006)
    UniqueConstraint("request_id", "approver", name="uq_approvals_request_approver"),
)

events = Table(
    "events",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("request_id", String(36)),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(320), nullable=False),
    Column("role", String(20), nullable=False),
    Column("action", String(32), nullable=False),
    Column("from_state", String(20)),
    Column("to_state", String(20)),
    Column("reason", Text),
    Column("data", Text, nullable=False),  # canonical JSON: Azure's answer, the rules' words
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_events_request", "request_id"),
    Index("ix_events_at", "at"),
)

# One row (id 1): the last event's number and hash. Writers lock it to append, so the chain
# stays linear whatever the number of writers, and a deleted last event is still seen.
chain_head = Table(
    "chain_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("request_id", String(36)),
    Column("kind", String(40), nullable=False),
    Column("payload", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("claimed_by", String(200)),
    Column("claimed_at", UtcDateTime),
    Column("sent_at", UtcDateTime),
    Column("last_error", Text),
    Column("delivered", Text),  # JSON list of the receivers that took it (migration 0002)
    Index("ix_outbox_due", "sent_at", "next_attempt_at"),
)

# The web pages' sign-ins (migration 0007): the browser's cookie holds the id alone, so a token
# with hundreds of groups never outgrows a cookie and no bearer token travels in one.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id", String(64), primary_key=True),  # sha256 of the cookie's random id
    Column("principal", Text, nullable=False),  # JSON: who signed in, as the token said
    Column("id_token", Text),  # for sign-out at the issuer (id_token_hint)
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),  # the access token's expiry
    Index("ix_web_sessions_expires", "expires_at"),
)
