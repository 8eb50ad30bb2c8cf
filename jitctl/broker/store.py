"""The broker's store: requests, approvals, the audit log and the outbox, in SQL.

SQLite (WAL, a private file in jitctl's state folder) by default; PostgreSQL through psycopg 3
(`postgresql+psycopg://...`) for teams running several brokers. Every transition is one
conditional UPDATE (`WHERE id = :id AND state = :expected`, its row count checked) and one
event, with the notifications it causes, in one transaction. SQLite transactions start with
BEGIN IMMEDIATE (one writer at a time); PostgreSQL locks rows (FOR UPDATE, SKIP LOCKED for
work any replica may take) and the chain head, so the log stays one line.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from jitctl.broker import auditlog
from jitctl.broker.auditlog import LogCheck, NewEvent
from jitctl.broker.errors import (
    AlreadyReviewed,
    BadRequestInput,
    RequestNotFound,
    SelfApproval,
    StoreUnavailable,
    WrongState,
)
from jitctl.broker.lifecycle import Action, Role, State, check
from jitctl.broker.models import approvals, outbox, requests
from jitctl.broker.records import RequestRecord, record_of
from jitctl.broker.rules import Ask, Decision, Outcome
from jitctl.clock import Clock
from jitctl.errors import Refused
from jitctl.files import PRIVATE_FILE, private_dir
from jitctl.textsafe import printable

MIGRATE_LOCK = 0x6A697463746C  # pg_advisory_xact_lock key: one replica migrates at a time
SYSTEM = "broker"


def default_url() -> str:
    """SQLite in jitctl's state folder, created 0600 in a 0700 folder (the WAL files SQLite
    adds take the database file's mode)."""
    from platformdirs import user_state_dir

    path = private_dir(Path(user_state_dir("jitctl", appauthor=False))) / "broker.sqlite"
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE))
    if os.name == "posix":
        os.chmod(path, PRIVATE_FILE)
    return f"sqlite:///{path}"


def open_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5})
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _connect(dbapi: Any, _record: Any) -> None:
        dbapi.isolation_level = None  # SQLAlchemy's "begin" below starts each transaction
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "synchronous=NORMAL"):
            dbapi.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Take the write lock first: a deferred transaction that reads then writes fails with
        # "database is locked" under concurrent writers instead of waiting its turn.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@dataclass(frozen=True)
class Note:
    """A notification to send after commit (the outbox row is written with the decision)."""

    kind: str
    payload: dict[str, Any]


@dataclass
class _Tx:
    conn: Connection
    now: datetime
    events: list[NewEvent] = field(default_factory=list)
    notes: list[tuple[str | None, Note]] = field(default_factory=list)

    def log(
        self,
        request_id: str | None,
        actor: str,
        role: Role,
        action: Action | str,
        source: State | None,
        target: State | None,
        reason: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self.events.append(
            NewEvent(
                request_id,
                actor,
                role.value,
                getattr(action, "value", str(action)),
                source.value if source else None,
                target.value if target else None,
                reason,
                data or {},
            )
        )

    def notify(self, request_id: str | None, note: Note) -> None:
        self.notes.append((request_id, note))


class Store:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        self.postgres = engine.dialect.name == "postgresql"

    @classmethod
    def open(cls, url: str | None, clock: Clock) -> Store:
        return cls(open_engine(url or default_url()), clock)

    # --- plumbing -----------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[_Tx]:
        try:
            with self.engine.begin() as conn:
                tx = _Tx(conn, self.clock.now())
                yield tx
                auditlog.append(conn, tx.now, tx.events)
                if tx.notes:
                    conn.execute(
                        outbox.insert(),
                        [
                            {
                                "created_at": tx.now,
                                "request_id": rid,
                                "kind": n.kind,
                                "payload": auditlog.canonical_json(n.payload),
                                "attempts": 0,
                                "next_attempt_at": tx.now,
                            }
                            for rid, n in tx.notes
                        ],
                    )
        except (OperationalError, InterfaceError, PoolTimeout) as err:
            raise StoreUnavailable(
                f"The broker's database did not answer ({type(err.orig or err).__name__}); "
                "nothing was written.",
                "Check that the database is up and reachable, then try again.",
            ) from err

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._tx() as tx:
            yield tx.conn

    def migrate(self) -> None:
        """Bring the schema to the newest revision (Alembic, shipped in the package)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        with self._tx() as tx:
            if self.postgres:
                tx.conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATE_LOCK})")
            cfg.attributes["connection"] = tx.conn
            command.upgrade(cfg, "head")

    def _locked(self, conn: Connection, request_id: str) -> RequestRecord:
        row = (
            conn.execute(select(requests).where(requests.c.id == request_id).with_for_update())
            .mappings()
            .first()
        )
        if row is None:
            raise RequestNotFound(
                f"No access request {printable(request_id)}.",
                "List them with `jitctl broker list`.",
            )
        return record_of(row)

    def _move(self, tx: _Tx, rec: RequestRecord, target: State, **values: Any) -> None:
        """The one conditional write of a transition; a lost race is WrongState."""
        done = tx.conn.execute(
            requests.update()
            .where(requests.c.id == rec.id, requests.c.state == rec.state.value)
            .values(state=target.value, version=rec.version + 1, updated_at=tx.now, **values)
        )
        if done.rowcount != 1:
            raise WrongState(
                f"Request {rec.id} changed while this was decided; it is no longer {rec.state.value}.",
                "Show it again and decide on what it is now.",
            )

    # --- requests -------------------------------------------------------------------------

    def create(self, ask: Ask, decision: Decision, source: str | None = None) -> RequestRecord:
        """Store a request the rules let through: pending, or approved at once (auto-approved,
        break-glass). Bad input stores nothing; a refusal stores only its audit event."""
        if decision.problems:
            raise BadRequestInput(
                "; ".join(decision.problems) + ".", "Fix the request and send it again."
            )
        who = ask.requester.upn.lower()
        if decision.outcome is Outcome.DENIED:
            with self._tx() as tx:
                tx.log(
                    None,
                    who,
                    Role.REQUESTER,
                    "refuse",
                    None,
                    None,
                    decision.reasons[-1],
                    {
                        "vm_id": ask.vm_id,
                        "ports": list(ask.ports),
                        "reasons": list(decision.reasons),
                    },
                )
            raise Refused(
                f"Request refused: {decision.reasons[-1]}.",
                "Ask an approver or an admin about the approval rules.",
            )
        target = State.PENDING if decision.outcome is Outcome.NEEDS_APPROVAL else State.APPROVED
        check(Action.REQUEST, None, {Role.REQUESTER}, target)
        rid = str(uuid.uuid4())
        with self._tx() as tx:
            row = {
                "id": rid,
                "created_at": tx.now,
                "updated_at": tx.now,
                "state": target.value,
                "version": 1,
                "requester": who,
                "requester_groups": json.dumps(sorted(ask.requester.groups)),
                "vm_id": ask.vm_id,
                "ports": json.dumps(list(ask.ports)),
                "source": source,
                "duration_s": int(ask.duration.total_seconds()),
                "reason": ask.reason,
                "ticket": ask.ticket,
                "break_glass": ask.break_glass,
                "outcome": decision.outcome.value,
                "min_approvals": decision.min_approvals,
                "approver_sets": json.dumps([list(s) for s in decision.approver_sets]),
                "rules": json.dumps(list(decision.rules)),
                "pending_until": tx.now + decision.pending_ttl,
            }
            tx.conn.execute(requests.insert().values(**row))
            facts = {
                "vm_id": ask.vm_id,
                "ports": list(ask.ports),
                "duration_s": row["duration_s"],
                "source": source,
                "ticket": ask.ticket,
                "outcome": decision.outcome.value,
                "rules": list(decision.rules),
                "reasons": list(decision.reasons),
            }
            tx.log(rid, who, Role.REQUESTER, Action.REQUEST, None, target, ask.reason, facts)
            kind = {
                Outcome.NEEDS_APPROVAL: "request.created",
                Outcome.AUTO_APPROVED: "request.approved",
                Outcome.BREAK_GLASS_ALLOWED: "break_glass",
            }[decision.outcome]
            tx.notify(rid, Note(kind, {"id": rid, "requester": who, **facts, "reason": ask.reason}))
            return record_of(row)

    def get(self, request_id: str) -> RequestRecord:
        with self._read() as conn:
            row = (
                conn.execute(select(requests).where(requests.c.id == request_id)).mappings().first()
            )
            if row is None:
                raise RequestNotFound(
                    f"No access request {printable(request_id)}.",
                    "List them with `jitctl broker list`.",
                )
            found = (
                conn.execute(
                    select(approvals.c.approver)
                    .where(approvals.c.request_id == request_id)
                    .order_by(approvals.c.id)
                )
                .scalars()
                .all()
            )
            return record_of(row, tuple(found))

    def list(
        self, *, states: Sequence[State] = (), requester: str | None = None, limit: int = 100
    ) -> list[RequestRecord]:
        query = select(requests).order_by(requests.c.created_at.desc()).limit(limit)
        if states:
            query = query.where(requests.c.state.in_([s.value for s in states]))
        if requester:
            query = query.where(requests.c.requester == requester.lower())
        with self._read() as conn:
            return [record_of(r) for r in conn.execute(query).mappings()]

    def approve(self, request_id: str, approver: str, comment: str | None = None) -> RequestRecord:
        """One approval by a distinct person; the one that reaches minApprovals approves.
        The caller has checked that the rules name `approver` for this request."""
        who = approver.lower()
        with self._tx() as tx:
            rec = self._locked(tx.conn, request_id)
            if who == rec.requester:
                raise SelfApproval(
                    "Nobody approves their own request.", "Ask one of the approvers the rules name."
                )
            check(Action.REVIEW, rec.state, {Role.APPROVER})
            try:
                with tx.conn.begin_nested():
                    tx.conn.execute(
                        approvals.insert().values(
                            request_id=rec.id, approver=who, at=tx.now, comment=comment
                        )
                    )
            except IntegrityError:
                raise AlreadyReviewed(
                    f"{printable(approver)} has already approved request {rec.id}.",
                    "Another approver must approve it.",
                ) from None
            count = tx.conn.execute(
                select(func.count()).select_from(approvals).where(approvals.c.request_id == rec.id)
            ).scalar_one()
            target = State.APPROVED if count >= rec.min_approvals else State.PENDING
            action = Action.APPROVE if target is State.APPROVED else Action.REVIEW
            self._move(tx, rec, target)
            tx.log(
                rec.id,
                who,
                Role.APPROVER,
                action,
                rec.state,
                target,
                comment,
                {"approvals": count, "min_approvals": rec.min_approvals},
            )
            if target is State.APPROVED:
                tx.notify(
                    rec.id,
                    Note("request.approved", {"id": rec.id, "requester": rec.requester, "by": who}),
                )
        return self.get(request_id)

    def decide(
        self,
        request_id: str,
        action: Action,
        actor: str,
        roles: frozenset[Role] | set[Role],
        reason: str | None = None,
        data: dict[str, Any] | None = None,
        **values: Any,
    ) -> RequestRecord:
        """deny, cancel, revoke, extend (and the system's moves): check, move, log, notify."""
        with self._tx() as tx:
            rec = self._locked(tx.conn, request_id)
            if (
                action is Action.CANCEL
                and Role.REQUESTER in roles
                and actor.lower() != rec.requester
            ):
                roles = set(roles) - {Role.REQUESTER}
            step = check(action, rec.state, roles)
            self._move(tx, rec, step.target, **values)
            role = next(
                r
                for r in (Role.SYSTEM, Role.ADMIN, Role.APPROVER, Role.REQUESTER)
                if r in step.roles and r in roles
            )
            tx.log(rec.id, actor.lower(), role, action, rec.state, step.target, reason, data)
            tx.notify(
                rec.id,
                Note(
                    f"request.{action.value}",
                    {
                        "id": rec.id,
                        "requester": rec.requester,
                        "by": actor.lower(),
                        "reason": reason,
                    },
                ),
            )
        return self.get(request_id)

    # --- work any replica may take ----------------------------------------------------------

    def claim_initiates(
        self, worker: str, *, limit: int = 10, stale_after: timedelta = timedelta(minutes=5)
    ) -> list[RequestRecord]:
        """Approved requests (and claims a dead broker left) for `worker` to initiate, each
        claimed by one replica only: SKIP LOCKED on PostgreSQL, a conditional UPDATE on both."""
        with self._tx() as tx:
            stale = tx.now - stale_after
            rows = (
                tx.conn.execute(
                    select(requests)
                    .where(
                        (requests.c.state == State.APPROVED.value)
                        | (
                            (requests.c.state == State.ACTIVATING.value)
                            & (requests.c.claimed_at < stale)
                        )
                    )
                    .order_by(requests.c.created_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
                .mappings()
                .all()
            )
            claimed = []
            for row in rows:
                rec = record_of(row)
                action = Action.CLAIM if rec.state is State.APPROVED else Action.RECLAIM
                step = check(action, rec.state, {Role.SYSTEM})
                cond = (
                    requests.c.claimed_at == rec.claimed_at
                    if rec.claimed_at
                    else requests.c.claimed_at.is_(None)
                )
                done = tx.conn.execute(
                    requests.update()
                    .where(requests.c.id == rec.id, requests.c.state == rec.state.value, cond)
                    .values(
                        state=step.target.value,
                        version=rec.version + 1,
                        updated_at=tx.now,
                        claimed_by=worker,
                        claimed_at=tx.now,
                    )
                )
                if done.rowcount == 1:
                    data = {"previous_claim": rec.claimed_by} if rec.claimed_by else {}
                    tx.log(rec.id, worker, Role.SYSTEM, action, rec.state, step.target, None, data)
                    claimed.append(rec.id)
        return [self.get(i) for i in claimed]

    def finish_initiate(
        self,
        request_id: str,
        worker: str,
        *,
        ok: bool,
        azure: dict[str, Any],
        ends_at: datetime | None = None,
        reason: str | None = None,
    ) -> RequestRecord:
        """activating -> active (Azure took the initiate and access was verified live) or
        failed; only by the replica that holds the claim."""
        action = Action.ACTIVATE if ok else Action.FAIL
        with self._tx() as tx:
            rec = self._locked(tx.conn, request_id)
            step = check(action, rec.state, {Role.SYSTEM})
            if rec.claimed_by != worker:
                raise WrongState(
                    f"Request {rec.id} is claimed by {rec.claimed_by}, not {worker}.",
                    "Leave it to the replica that holds the claim.",
                )
            self._move(tx, rec, step.target, ends_at=ends_at)
            tx.log(
                rec.id,
                worker,
                Role.SYSTEM,
                action,
                rec.state,
                step.target,
                reason,
                {"azure": azure},
            )
            tx.notify(
                rec.id,
                Note(
                    f"request.{step.target.value}",
                    {"id": rec.id, "requester": rec.requester, "reason": reason},
                ),
            )
        return self.get(request_id)

    def sweep(self, *, limit: int = 100) -> list[tuple[str, State]]:
        """Pending requests past their time to live, active ones past their end: closed once,
        by whichever replica gets there first."""
        moved: list[tuple[str, State]] = []
        with self._tx() as tx:
            due = (
                tx.conn.execute(
                    select(requests)
                    .where(
                        (
                            (requests.c.state == State.PENDING.value)
                            & (requests.c.pending_until <= tx.now)
                        )
                        | (
                            (requests.c.state == State.ACTIVE.value)
                            & (requests.c.ends_at <= tx.now)
                        )
                    )
                    .order_by(requests.c.created_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
                .mappings()
                .all()
            )
            for row in due:
                rec = record_of(row)
                action = Action.EXPIRE_PENDING if rec.state is State.PENDING else Action.EXPIRE
                step = check(action, rec.state, {Role.SYSTEM})
                self._move(tx, rec, step.target)
                tx.log(rec.id, SYSTEM, Role.SYSTEM, action, rec.state, step.target)
                tx.notify(
                    rec.id,
                    Note(
                        f"request.{step.target.value}", {"id": rec.id, "requester": rec.requester}
                    ),
                )
                moved.append((rec.id, step.target))
        return moved

    # --- the outbox -------------------------------------------------------------------------

    def claim_notes(
        self, worker: str, *, limit: int = 20, lease: timedelta = timedelta(minutes=1)
    ) -> list[tuple[int, Note]]:
        with self._tx() as tx:
            rows = tx.conn.execute(
                select(outbox.c.id, outbox.c.kind, outbox.c.payload)
                .where(outbox.c.sent_at.is_(None), outbox.c.next_attempt_at <= tx.now)
                .order_by(outbox.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            for r in rows:
                tx.conn.execute(
                    outbox.update()
                    .where(outbox.c.id == r.id)
                    .values(claimed_by=worker, claimed_at=tx.now, next_attempt_at=tx.now + lease)
                )
        return [(int(r.id), Note(r.kind, json.loads(r.payload))) for r in rows]

    def note_sent(self, note_id: int) -> None:
        with self._tx() as tx:
            tx.conn.execute(outbox.update().where(outbox.c.id == note_id).values(sent_at=tx.now))

    def note_failed(self, note_id: int, error: str, retry_in: timedelta) -> None:
        with self._tx() as tx:
            tx.conn.execute(
                outbox.update()
                .where(outbox.c.id == note_id)
                .values(
                    attempts=outbox.c.attempts + 1,
                    last_error=error[:500],
                    next_attempt_at=tx.now + retry_in,
                )
            )

    # --- the audit log ----------------------------------------------------------------------

    def verify_log(self) -> LogCheck:
        with self._read() as conn:
            return auditlog.verify(conn)

    def export_log(self, out: TextIO, fmt: str = "jsonl", since: datetime | None = None) -> int:
        """Write the events as JSON Lines or CSV; returns how many."""
        write = {"jsonl": auditlog.write_jsonl, "csv": auditlog.write_csv}[fmt]
        with self._read() as conn:
            return write(auditlog.rows(conn, since), out)
