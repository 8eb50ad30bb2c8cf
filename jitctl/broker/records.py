"""What the store hands back: frozen records, never SQLAlchemy rows."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jitctl.broker.lifecycle import State


@dataclass(frozen=True)
class RequestRecord:
    id: str
    state: State
    version: int
    requester: str
    requester_groups: tuple[str, ...]
    vm_id: str
    ports: tuple[int, ...]
    source: str | None
    duration: timedelta
    reason: str | None
    ticket: str | None
    break_glass: bool
    outcome: str
    min_approvals: int
    approver_sets: tuple[tuple[str, ...], ...]
    rules: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    pending_until: datetime
    ends_at: datetime | None = None
    claimed_by: str | None = None
    claimed_at: datetime | None = None
    approved_by: tuple[str, ...] = ()
    released_at: datetime | None = None  # revoked: when the broker had removed the allow rules
    extend_to: datetime | None = None  # active: an extension Azure has not granted yet
    # active: where to connect ({"connect": [...], "verification": {...}}), as the worker found
    access: Mapping[str, Any] | None = None
    requester_oid: str | None = None  # the token's object id: who asked, whatever their name
    requester_tid: str | None = None

    @property
    def was_live(self) -> bool:
        """Access was verified live once: activating sets Azure's end time, nothing clears
        it. A request revoked while activating was not: Azure may still apply its initiate."""
        return self.ends_at is not None


def record_of(row: Mapping[Any, Any], approved_by: tuple[str, ...] = ()) -> RequestRecord:
    return RequestRecord(
        id=row["id"],
        state=State(row["state"]),
        version=row["version"],
        requester=row["requester"],
        requester_groups=tuple(json.loads(row["requester_groups"])),
        vm_id=row["vm_id"],
        ports=tuple(json.loads(row["ports"])),
        source=row["source"],
        duration=timedelta(seconds=row["duration_s"]),
        reason=row["reason"],
        ticket=row["ticket"],
        break_glass=bool(row["break_glass"]),
        outcome=row["outcome"],
        min_approvals=row["min_approvals"],
        approver_sets=tuple(tuple(s) for s in json.loads(row["approver_sets"])),
        rules=tuple(json.loads(row["rules"])),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        pending_until=row["pending_until"],
        ends_at=row.get("ends_at"),
        claimed_by=row.get("claimed_by"),
        claimed_at=row.get("claimed_at"),
        approved_by=approved_by,
        released_at=row.get("released_at"),
        extend_to=row.get("extend_to"),
        access=json.loads(row["access"]) if row.get("access") else None,
        requester_oid=row.get("requester_oid"),
        requester_tid=row.get("requester_tid"),
    )
