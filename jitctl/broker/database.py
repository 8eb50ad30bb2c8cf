"""The broker's database: engines for SQLite and PostgreSQL, transactions, migrations.

Every write goes through `Database._tx`: the events and notifications a transaction collects
are appended (hash-chained) and queued (outbox) in it before it commits, and a database that
does not answer is `StoreUnavailable` with the transaction rolled back.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping, create_engine, event, select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from jitctl.broker import auditlog
from jitctl.broker.auditlog import NewEvent
from jitctl.broker.errors import StoreUnavailable, WrongState, no_such_request
from jitctl.broker.lifecycle import Action, Role, State
from jitctl.broker.models import approvals, outbox, requests
from jitctl.broker.records import RequestRecord, record_of
from jitctl.clock import Clock
from jitctl.files import PRIVATE_FILE, private_dir

MIGRATE_LOCK = 0x6A697463746C  # pg_advisory_xact_lock key: one replica migrates at a time
SYSTEM = "broker"

READ_ONLY = "jitctl_read_only"  # execution option: a transaction that only reads
WORK_STATES = (State.APPROVED, State.REVOKED)  # states the worker acts on (initiate, release)


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
        # A writer takes the write lock first: a deferred transaction that reads then writes
        # fails with "database is locked" under concurrent writers instead of waiting its
        # turn. Readers begin deferred: in WAL mode they read a snapshot beside the writer.
        reading = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")

    return engine


@dataclass(frozen=True)
class Note:
    """A notification to send after commit (the outbox row is written with the decision)."""

    kind: str
    payload: dict[str, Any]
    attempts: int = 0  # sends tried before (for the backoff)
    delivered: tuple[str, ...] = ()  # the receivers that already took it (their keys)


def note_kind(action: Action, target: State) -> str:
    """What a notification tells: the state a request reached (request.created, .approved,
    .denied, .active, .expired...), or request.extended."""
    if action is Action.EXTEND:
        return "request.extended"
    if action is Action.REQUEST and target is State.PENDING:
        return "request.created"
    return f"request.{target.value}"


@dataclass
class _Tx:
    conn: Connection
    now: datetime
    events: list[NewEvent] = field(default_factory=list)
    notes: list[tuple[str | None, Note]] = field(default_factory=list)
    work: bool = False  # the worker has something to do once this commits

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


class Database:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        self.postgres = engine.dialect.name == "postgresql"
        # SQLite has one writer at a time. Writers of this process take turns on this lock
        # before BEGIN IMMEDIATE: a writer that meets SQLite's lock instead sleeps in its busy
        # handler's steps (up to 100 ms each) while holding a pooled connection, which at 50
        # concurrent clients made p99 seconds. Other processes still wait in the busy handler.
        self._writer: threading.Lock | contextlib.AbstractContextManager[Any] = (
            threading.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext()
        )
        # Set after a commit that gives the worker something to do (an approval, a revoke, an
        # extension): this process's worker starts a round at once instead of at its next
        # tick, so an approval's initiate leaves within milliseconds, not seconds.
        self.work_ready = threading.Event()

    # --- plumbing -----------------------------------------------------------------------

    @contextmanager
    def _unavailable_is_named(self) -> Iterator[None]:
        try:
            yield
        except (OperationalError, InterfaceError, PoolTimeout) as err:
            cause = type(getattr(err, "orig", None) or err).__name__
            raise StoreUnavailable(
                f"The broker's database did not answer ({cause}); nothing was written.",
                "Check that the database is up and reachable, then try again.",
            ) from err

    @contextmanager
    def _tx(self) -> Iterator[_Tx]:
        with self._unavailable_is_named(), self._writer, self.engine.begin() as conn:
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
        if tx.work:
            self.work_ready.set()

    @staticmethod
    def due(conn: Connection, where: Any, order: Any, limit: int) -> Sequence[RowMapping]:
        """The requests `where` selects, oldest `order` first, locked for this transaction;
        rows another replica holds are skipped, not waited for (SKIP LOCKED on PostgreSQL; on
        SQLite the transaction holds the only writer's lock)."""
        query = (
            select(requests)
            .where(where)
            .order_by(order)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return conn.execute(query).mappings().all()

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A transaction outside the requests' lifecycle (the pages' sign-ins): no event, no
        notification; a database that does not answer is StoreUnavailable, as elsewhere."""
        with self._unavailable_is_named(), self._writer, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read-only transaction: a snapshot, beside any writer (no writer's lock)."""
        with (
            self._unavailable_is_named(),
            self.engine.connect().execution_options(**{READ_ONLY: True}) as conn,
            conn.begin(),
        ):
            yield conn

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
        """The request, its row locked to the end of the transaction (FOR UPDATE on
        PostgreSQL; SQLite's write lock is already held)."""
        return self._fetch(conn, request_id, lock=True)

    def _move(self, tx: _Tx, rec: RequestRecord, target: State, **values: Any) -> None:
        """The one conditional write of a transition; a lost race is WrongState."""
        done = tx.conn.execute(
            requests.update()
            .where(requests.c.id == rec.id, requests.c.state == rec.state.value)
            .values(state=target.value, version=rec.version + 1, updated_at=tx.now, **values)
        )
        tx.work = tx.work or target in WORK_STATES or values.get("extend_to") is not None
        if done.rowcount != 1:
            raise WrongState(
                f"Request {rec.id} changed while this was decided; it is no longer {rec.state.value}.",
                "Show it again and decide on what it is now.",
            )

    def ping(self) -> None:
        """One round trip: StoreUnavailable when the database does not answer."""
        with self.reading() as conn:
            conn.exec_driver_sql("SELECT 1")

    def get(self, request_id: str) -> RequestRecord:
        with self.reading() as conn:
            return self._fetch(conn, request_id)

    def _fetch(self, conn: Connection, request_id: str, *, lock: bool = False) -> RequestRecord:
        query = select(requests).where(requests.c.id == request_id)
        row = conn.execute(query.with_for_update() if lock else query).mappings().first()
        if row is None:
            raise no_such_request(request_id)
        found = conn.execute(
            select(approvals.c.approver)
            .where(approvals.c.request_id == request_id)
            .order_by(approvals.c.id)
        ).scalars()
        return record_of(row, tuple(found))
