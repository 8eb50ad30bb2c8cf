"""The audit log: events hash-chained row to row, its verification, and its export.

Each event's hash is SHA-256 over the previous event's hash and the event's canonical JSON
(sorted keys, UTC times to the microsecond), so editing or deleting a row breaks the chain at
that row; the chain head (the last number and hash) shows a deleted last row. Tamper-evident,
not tamper-proof: whoever can write the database can rewrite the whole chain, so keep exports
(or the head hash) somewhere the database's writers cannot change.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TextIO

from sqlalchemy import Connection, select

from jitctl.broker.models import GENESIS, chain_head, events

FIELDS = (
    "seq",
    "request_id",
    "at",
    "actor",
    "role",
    "action",
    "from_state",
    "to_state",
    "reason",
    "data",
)


def utc_text(at: datetime) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def event_hash(prev_hash: str, row: dict[str, Any]) -> str:
    content = {k: row[k] for k in FIELDS}
    content["at"] = utc_text(row["at"])
    return hashlib.sha256((prev_hash + canonical_json(content)).encode()).hexdigest()


@dataclass(frozen=True)
class NewEvent:
    request_id: str | None
    actor: str
    role: str
    action: str
    from_state: str | None
    to_state: str | None
    reason: str | None
    data: dict[str, Any]


def append(conn: Connection, at: datetime, new: Iterable[NewEvent]) -> None:
    """Append events after the chain head, locked to the end of the transaction (FOR UPDATE
    on PostgreSQL; on SQLite, BEGIN IMMEDIATE already holds the database's write lock)."""
    todo = list(new)
    if not todo:
        return
    head = conn.execute(
        select(chain_head.c.seq, chain_head.c.hash).where(chain_head.c.id == 1).with_for_update()
    ).one()
    seq, prev = int(head.seq), str(head.hash)
    rows = []
    for e in todo:
        seq += 1
        row: dict[str, Any] = {
            "seq": seq,
            "request_id": e.request_id,
            "at": at,
            "actor": e.actor,
            "role": e.role,
            "action": e.action,
            "from_state": e.from_state,
            "to_state": e.to_state,
            "reason": e.reason,
            "data": canonical_json(e.data),
        }
        row["prev_hash"] = prev
        row["hash"] = prev = event_hash(prev, row)
        rows.append(row)
    conn.execute(events.insert(), rows)
    conn.execute(chain_head.update().where(chain_head.c.id == 1).values(seq=seq, hash=prev))


@dataclass(frozen=True)
class LogCheck:
    events: int
    problems: tuple[str, ...]
    head_hash: str

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(conn: Connection) -> LogCheck:
    """Walk the chain from the first event; name every row that breaks it."""
    problems: list[str] = []
    expected_seq, prev, count = 1, GENESIS, 0
    for row in conn.execute(select(events).order_by(events.c.seq)).mappings():
        count += 1
        seq = int(row["seq"])
        if seq != expected_seq:
            missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}-{seq - 1}"
            problems.append(f"event {missing} is missing: deleted")
        if row["prev_hash"] != prev:
            problems.append(f"event {seq}: its previous hash does not match event {seq - 1}")
        if event_hash(row["prev_hash"], dict(row)) != row["hash"]:
            problems.append(f"event {seq}: its content was changed after it was written")
        prev, expected_seq = row["hash"], seq + 1
    head = conn.execute(
        select(chain_head.c.seq, chain_head.c.hash).where(chain_head.c.id == 1)
    ).one()
    last, written = expected_seq - 1, int(head.seq)
    if written > last:
        gone = f"{last + 1}" if written == last + 1 else f"{last + 1}-{written}"
        problems.append(
            f"event {gone} is missing: the log ends at event {last} but the chain head says "
            f"{written}: deleted"
        )
    elif written < last:
        problems.append(f"the chain head says {written} but the log goes on to event {last}")
    elif head.hash != prev:
        problems.append(f"event {head.seq}: its hash does not match the chain head")
    return LogCheck(count, tuple(problems), str(head.hash))


def rows(
    conn: Connection, since: datetime | None = None, request_ids: Sequence[str] | None = None
) -> Iterator[dict[str, Any]]:
    query = select(events).order_by(events.c.seq)
    if since is not None:
        query = query.where(events.c.at >= since)
    if request_ids is not None:
        query = query.where(events.c.request_id.in_(list(request_ids)))
    for row in conn.execute(query).mappings():
        out = {k: row[k] for k in (*FIELDS, "prev_hash", "hash")}
        out["at"] = utc_text(row["at"])
        out["data"] = json.loads(row["data"])
        yield out


def write_jsonl(items: Iterable[dict[str, Any]], out: TextIO) -> int:
    n = 0
    for item in items:
        out.write(json.dumps(item, sort_keys=True, ensure_ascii=False) + "\n")
        n += 1
    return n


def write_csv(items: Iterable[dict[str, Any]], out: TextIO) -> int:
    """One row per event; `data` as JSON text. Cells that a spreadsheet would run as a formula
    (=, +, -, @ first) get a leading quote, as OWASP's CSV-injection advice says."""
    writer = csv.writer(out, lineterminator="\n")
    header = (*FIELDS, "prev_hash", "hash")
    writer.writerow(header)
    n = 0
    for item in items:
        cells = [canonical_json(item[k]) if k == "data" else item[k] for k in header]
        writer.writerow(
            ["'" + c if isinstance(c, str) and c[:1] and c[0] in "=+-@\t\r" else c for c in cells]
        )
        n += 1
    return n
