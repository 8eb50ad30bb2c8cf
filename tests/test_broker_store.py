"""The broker's store on SQLite (always) and PostgreSQL (when a throwaway server starts)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import stat
import threading
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.exc import OperationalError

from jitctl.broker.errors import (
    AlreadyReviewed,
    BadRequestInput,
    NotPermitted,
    SelfApproval,
    StoreUnavailable,
    WrongState,
)
from jitctl.broker.lifecycle import Action, Role, State
from jitctl.broker.models import events, metadata, outbox, requests
from jitctl.broker.rules import Ask, Decision, Outcome, Principal
from jitctl.broker.store import Store, default_url, open_engine
from jitctl.clock import FakeClock, SystemClock
from jitctl.errors import Refused

VM = "/subscriptions/s1/resourceGroups/rg-prod/providers/Microsoft.Compute/virtualMachines/web1"


@pytest.fixture(scope="module")
def pg_template(postgres_server: str) -> Any:
    """A database migrated once from empty; each test gets a copy (CREATE DATABASE ...
    TEMPLATE), which is faster than migrating every time."""
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE DATABASE broker_template"))
    migrated = Store(
        open_engine(postgres_server.rsplit("/", 1)[0] + "/broker_template"), SystemClock()
    )
    migrated.migrate()
    migrated.engine.dispose()
    yield admin
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE broker_template WITH (FORCE)"))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'broker.sqlite'}"
        return
    admin = request.getfixturevalue("pg_template")
    name = f"t{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} TEMPLATE broker_template"))
    yield admin.url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(url: str, clock: FakeClock) -> Any:
    s = Store(open_engine(url), clock)
    s.migrate()
    yield s
    s.engine.dispose()


def ops(upn: str) -> Principal:
    return Principal(upn, frozenset({"ops"}))


def ask(upn: str = "ann@contoso.com", **kw: Any) -> Ask:
    base = {
        "requester": Principal(upn, frozenset({"eng"})),
        "vm_id": VM,
        "ports": (22,),
        "duration": timedelta(hours=1),
        "at": FakeClock().now(),
        "reason": "hotfix",
    }
    return Ask(**{**base, **kw})


def manual(n: int = 1, problems: tuple[str, ...] = ()) -> Decision:
    return Decision(
        Outcome.NEEDS_APPROVAL,
        ("p.yaml:7 (approvals[0])",),
        (("group:ops",),),
        n,
        timedelta(hours=3),
        timedelta(hours=1),
        ("needs approval",),
        problems,
        "ann@contoso.com",
    )


def counts(s: Store) -> tuple[int, int, int]:
    with s.engine.connect() as conn:
        return tuple(
            conn.execute(select(text("count(*)")).select_from(t)).scalar_one()
            for t in (requests, events, outbox)
        )  # type: ignore[return-value]


def test_migrations_make_the_models_schema_and_run_twice(store: Store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    store.migrate()  # already at head: nothing to do, no error
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    assert store.verify_log().ok and store.verify_log().events == 0


def test_create_writes_request_event_and_notification_together(store: Store, clock: FakeClock):
    rec = store.create(ask(ticket="INC1"), manual(), source="203.0.113.7")
    assert (rec.state, rec.requester, rec.ports, rec.min_approvals) == (
        State.PENDING,
        "ann@contoso.com",
        (22,),
        1,
    )
    assert rec.pending_until == clock.now() + timedelta(hours=1)
    assert store.get(rec.id) == rec
    assert counts(store) == (1, 1, 1)
    notes = store.claim_notes("w1")
    assert [(n.kind, n.payload["id"], n.payload["source"]) for _, n in notes] == [
        ("request.created", rec.id, "203.0.113.7")
    ]


def test_bad_input_stores_nothing_and_a_refusal_only_its_event(store: Store):
    with pytest.raises(BadRequestInput) as err:
        store.create(ask(), manual(problems=("a reason is required by p.yaml:7",)))
    assert (
        err.value.one_line()
        == "a reason is required by p.yaml:7. Fix the request and send it again."
    )
    assert counts(store) == (0, 0, 0)
    denied = Decision(
        Outcome.DENIED,
        (),
        reasons=("denied by p.yaml:17: group:contractors",),
        problems=("a reason is required by p.yaml:7",),  # refused whatever the input
    )
    with pytest.raises(Refused, match=r"denied by p\.yaml:17"):
        store.create(ask(), denied)
    assert counts(store) == (0, 1, 0)
    buf = io.StringIO()
    store.export_log(buf)
    (logged,) = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert (logged["action"], logged["actor"], logged["request_id"]) == (
        "refuse",
        "ann@contoso.com",
        None,
    )


def test_approvals_count_distinct_people_never_the_requester(store: Store):
    rec = store.create(ask(), manual(2))
    with pytest.raises(SelfApproval):
        store.approve(rec.id, ops("ANN@contoso.com"))
    with pytest.raises(NotPermitted) as err:
        store.approve(rec.id, Principal("eve@contoso.com", frozenset({"eng"})))
    assert (
        err.value.one_line()
        == f"eve@contoso.com may not approve request {rec.id}. Its approvers are: group:ops."
    )
    first = store.approve(rec.id, ops("bob@contoso.com"), "ok")
    assert (first.state, first.approved_by) == (State.PENDING, ("bob@contoso.com",))
    with pytest.raises(AlreadyReviewed):
        store.approve(rec.id, ops("Bob@Contoso.com"))
    second = store.approve(rec.id, ops("cat@contoso.com"))
    assert (second.state, second.approved_by) == (
        State.APPROVED,
        ("bob@contoso.com", "cat@contoso.com"),
    )
    with pytest.raises(WrongState):
        store.approve(rec.id, ops("dan@contoso.com"))
    assert store.verify_log().events == 3


def test_deny_cancel_and_who_may(store: Store):
    a = store.create(ask(), manual())
    with pytest.raises(NotPermitted):
        store.decide(a.id, Action.DENY, "ann@contoso.com", {Role.REQUESTER})
    with pytest.raises(NotPermitted):  # someone else's request is not theirs to cancel
        store.decide(a.id, Action.CANCEL, "eve@contoso.com", {Role.REQUESTER})
    with pytest.raises(NotPermitted):  # an approver never decides their own request
        store.decide(a.id, Action.DENY, "Ann@contoso.com", {Role.APPROVER, Role.REQUESTER})
    assert (
        store.decide(a.id, Action.DENY, "bob@contoso.com", {Role.APPROVER}, "no").state
        is State.DENIED
    )
    b = store.create(ask(), manual())
    assert (
        store.decide(b.id, Action.CANCEL, "Ann@contoso.com", {Role.REQUESTER}).state
        is State.CANCELLED
    )
    assert [
        r.id
        for r in store.list_requests(
            states=[State.DENIED, State.CANCELLED], requester="ANN@contoso.com"
        )
    ] == [b.id, a.id]


def test_a_request_revoked_while_activating_is_released_only_once_its_initiate_claim_is_gone(
    store: Store, clock: FakeClock
):
    """On both databases: the holder of the initiate's claim may be sending it now, so the
    release waits until it gives the claim up (or it goes stale); the holder's late finish is
    refused, and giving up is one event; an active request's old claim holds nothing."""
    rec = store.create(ask(), manual())
    store.approve(rec.id, ops("bob@contoso.com"))
    store.claim_initiates("replica-a")
    store.decide(rec.id, Action.REVOKE, "ann@contoso.com", {Role.REQUESTER}, "not needed")
    assert store.claim_releases("r", stale_after=timedelta(minutes=5)) == []
    with pytest.raises(WrongState, match="Cannot activate this request: it is revoked"):
        store.finish_initiate(rec.id, "replica-a", ok=True, azure={}, ends_at=clock.now())
    assert not store.give_up_revoked(rec.id, "replica-b", reason="x", data={})  # not its claim
    assert store.give_up_revoked(rec.id, "replica-a", reason="saw it live", data={"n": 1})
    assert not store.give_up_revoked(rec.id, "replica-a", reason="again", data={})  # once
    (taken,) = store.claim_releases("r", stale_after=timedelta(minutes=5))
    assert (taken.id, taken.state, taken.claimed_by) == (rec.id, State.REVOKED, None)
    assert store.let_go_release(
        rec.id, "r", retry_in=timedelta(seconds=30), stale_after=timedelta(minutes=5)
    )
    assert store.claim_releases("s", stale_after=timedelta(minutes=5)) == []
    clock.advance(seconds=30)
    assert [r.id for r in store.claim_releases("s", stale_after=timedelta(minutes=5))] == [rec.id]
    events = [e for e in store.events_of([rec.id]) if e["action"] == "gave_up"]
    assert [(e["actor"], e["from_state"], e["to_state"], e["reason"]) for e in events] == [
        ("replica-a", "revoked", "revoked", "saw it live")
    ]
    live = store.create(ask(), manual())
    store.approve(live.id, ops("bob@contoso.com"))
    store.claim_initiates("replica-a")
    store.finish_initiate(live.id, "replica-a", ok=True, azure={}, ends_at=clock.now())
    store.decide(live.id, Action.REVOKE, "ann@contoso.com", {Role.REQUESTER}, "done")
    assert [r.id for r in store.claim_releases("r")] == [live.id]  # released at once


def test_a_revoke_before_the_initiate_is_sent_is_released_by_the_claims_holder(
    store: Store, clock: FakeClock
):
    rec = store.create(ask(), manual())
    store.approve(rec.id, ops("bob@contoso.com"))
    store.claim_initiates("replica-a")
    store.decide(rec.id, Action.REVOKE, "ann@contoso.com", {Role.REQUESTER}, "not needed")
    assert store.give_up_revoked(rec.id, "replica-a", reason="never sent", data={}, unsent=True)
    done = store.get(rec.id)
    assert (done.claimed_by, done.released_at) == (None, clock.now())
    assert store.claim_releases("r") == []  # nothing left to release
    assert [e["action"] for e in store.events_of([rec.id])][-2:] == ["revoke", "release"]


def test_initiate_claimed_once_reclaimed_when_stale_finished_by_its_holder(
    store: Store, clock: FakeClock
):
    rec = store.create(ask(), manual())
    store.approve(rec.id, ops("bob@contoso.com"))
    (claimed,) = store.claim_initiates("replica-a")
    assert (claimed.state, claimed.claimed_by) == (State.ACTIVATING, "replica-a")
    assert store.claim_initiates("replica-b") == []
    clock.advance(minutes=6)  # replica-a died mid-initiate
    (again,) = store.claim_initiates("replica-b")
    assert again.claimed_by == "replica-b"
    with pytest.raises(ValueError, match=r"needs its end time"):
        store.finish_initiate(rec.id, "replica-b", ok=True, azure={})
    with pytest.raises(WrongState, match="claimed by replica-b, not replica-a"):
        store.finish_initiate(rec.id, "replica-a", ok=True, azure={}, ends_at=clock.now())
    ends = clock.now() + timedelta(hours=1)
    active = store.finish_initiate(
        rec.id, "replica-b", ok=True, azure={"status": "Initiated"}, ends_at=ends
    )
    assert (active.state, active.ends_at) == (State.ACTIVE, ends)
    assert store.sweep() == []
    clock.advance(hours=1)
    assert store.sweep() == [(rec.id, State.EXPIRED)]
    buf = io.StringIO()
    store.export_log(buf)
    trail = [
        (e["action"], e["actor"], e["to_state"])
        for e in map(json.loads, buf.getvalue().splitlines())
    ]
    kinds = [n.kind for _, n in store.claim_notes("n", limit=50)]
    assert kinds == ["request.created", "request.approved", "request.active", "request.expired"]
    assert trail == [
        ("request", "ann@contoso.com", "pending"),
        ("approve", "bob@contoso.com", "approved"),
        ("claim", "replica-a", "activating"),
        ("reclaim", "replica-b", "activating"),
        ("activate", "replica-b", "active"),
        ("expire", "broker", "expired"),
    ]


def test_failed_initiate_and_pending_time_to_live(store: Store, clock: FakeClock):
    auto = Decision(Outcome.AUTO_APPROVED, ("r",), pending_ttl=timedelta(hours=1))
    rec = store.create(ask(), auto)
    assert rec.state is State.APPROVED
    store.claim_initiates("w")
    answer = {"error": {"code": "BadRequest", "message": "not a subset of policy"}}
    assert (
        store.finish_initiate(rec.id, "w", ok=False, azure=answer, reason="Azure refused").state
        is State.FAILED
    )
    waiting = store.create(ask(), manual())
    clock.advance(minutes=59)
    assert store.sweep() == []
    clock.advance(minutes=1)
    assert store.sweep() == [(waiting.id, State.PENDING_EXPIRED)]
    buf = io.StringIO()
    store.export_log(buf)
    failed = next(json.loads(x) for x in buf.getvalue().splitlines() if '"fail"' in x)
    assert failed["data"] == {"azure": answer}


def test_export_csv_neutralises_formulas(store: Store):
    store.create(ask(reason='=HYPERLINK("http://x")'), manual())
    buf = io.StringIO()
    assert store.export_log(buf, "csv") == 1
    header, row = csv.reader(io.StringIO(buf.getvalue()))
    assert ",".join(header) == (
        "seq,request_id,at,actor,role,action,from_state,to_state,reason,data,prev_hash,hash"
    )
    assert row[8] == '\'=HYPERLINK("http://x")'
    assert json.loads(row[9])["outcome"] == "needs_approval"


@pytest.mark.parametrize("tamper", ["edit", "delete-middle", "delete-last"])
def test_verify_log_names_the_tampered_row(store: Store, tamper: str):
    for _ in range(3):
        store.create(ask(), manual())
    assert store.verify_log().ok
    with store.engine.begin() as conn:
        if tamper == "edit":
            conn.execute(events.update().where(events.c.seq == 2).values(reason="nothing to see"))
        else:
            conn.execute(
                events.delete().where(events.c.seq == (2 if tamper == "delete-middle" else 3))
            )
    check = store.verify_log()
    assert not check.ok
    assert (
        check.problems
        == {
            "edit": ("event 2: its content was changed after it was written",),
            "delete-middle": (
                "event 2 is missing: deleted",
                "event 3: its previous hash does not match event 2",
            ),
            "delete-last": (
                "event 3 is missing: the log ends at event 2 but the chain head says 3: deleted",
            ),
        }[tamper]
    )


def test_unreachable_database_is_a_named_error():
    closed = Store(open_engine("postgresql+psycopg://u@127.0.0.1:9/x"), SystemClock())
    with pytest.raises(StoreUnavailable, match=r"did not answer .*nothing was written"):
        closed.migrate()
    with pytest.raises(StoreUnavailable):
        Store(open_engine("sqlite:////nonexistent-dir/x/broker.sqlite"), SystemClock()).migrate()


def test_a_fault_mid_transaction_leaves_nothing_half_written(store: Store):
    def cut(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO OUTBOX"):
            raise OperationalError(statement, {}, Exception("connection lost"))

    event.listen(store.engine, "before_cursor_execute", cut)
    with pytest.raises(StoreUnavailable):
        store.create(ask(), manual())
    event.remove(store.engine, "before_cursor_execute", cut)
    assert counts(store) == (0, 0, 0)
    assert store.verify_log().ok


def test_default_database_is_private(tmp_path: Any, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    url = default_url()
    path = tmp_path / "state" / "jitctl" / "broker.sqlite"
    assert url == f"sqlite:///{path}"
    s = Store.open(None, SystemClock())
    s.migrate()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"


def test_notes_retry_with_backoff_until_sent(store: Store, clock: FakeClock):
    store.create(ask(), manual())
    ((note_id, _),) = store.claim_notes("w1")
    assert store.claim_notes("w2") == []  # leased to w1
    assert store.note_failed(note_id, "w1", "receiver down", timedelta(seconds=30))
    clock.advance(seconds=29)
    assert store.claim_notes("w2") == []
    clock.advance(seconds=1)
    assert [i for i, _ in store.claim_notes("w2")] == [note_id]
    assert store.note_sent(note_id, "w2")
    clock.advance(minutes=5)
    assert store.claim_notes("w3") == []


def test_a_delivery_that_outlived_its_lease_records_nothing_over_the_new_holder(
    store: Store, clock: FakeClock
):
    store.create(ask(), manual())
    ((note_id, _),) = store.claim_notes("w1", lease=timedelta(minutes=1))
    clock.advance(minutes=2)  # w1 is still delivering; its lease ran out
    assert [i for i, _ in store.claim_notes("w2")] == [note_id]
    assert store.note_failed(note_id, "w1", "late timeout", timedelta(hours=1)) is False
    assert store.note_sent(note_id, "w1") is False  # w2 holds it: its record counts
    with store.engine.connect() as conn:
        row = conn.execute(select(outbox).where(outbox.c.id == note_id)).mappings().one()
    assert (row["attempts"], row["sent_at"], row["claimed_by"]) == (0, None, "w2")
    assert store.note_sent(note_id, "w2") is True
    assert store.note_sent(note_id, "w2") is False  # once


def test_racing_approvers_and_replicas_initiate_once(url: str):
    """Threads approve and claim the same requests at once, through two engines (on
    PostgreSQL: two replicas). Each request is claimed once; the log stays one chain."""
    clock = SystemClock()
    replicas = [Store(open_engine(url), clock) for _ in range(2)]
    replicas[0].migrate()
    ids = [replicas[0].create(ask(), manual(2)).id for _ in range(6)]
    claims: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        s = replicas[n % 2]
        try:
            for rid in ids:
                with contextlib.suppress(AlreadyReviewed, WrongState):
                    s.approve(rid, ops(f"approver{n % 4}@contoso.com"))
                got = s.claim_initiates(f"replica-{n}")
                with lock:
                    claims.extend(r.id for r in got)
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claims += [r.id for r in replicas[1].claim_initiates("late")]
    assert errors == []
    assert Counter(claims) == Counter(ids)  # every request exactly once
    check = replicas[0].verify_log()
    assert check.ok, check.problems
    with replicas[0].engine.connect() as conn:
        seqs = conn.execute(select(events.c.seq).order_by(events.c.seq)).scalars().all()
        per = Counter(conn.execute(select(events.c.action)).scalars().all())
    assert seqs == list(range(1, len(seqs) + 1))
    assert (per["request"], per["approve"], per["review"], per["claim"]) == (6, 6, 6, 6)
    for s in replicas:
        s.engine.dispose()


def test_reads_see_a_snapshot_beside_a_writer(store: Store):
    rec = store.create(ask(), manual())
    with store.engine.connect() as conn, conn.begin():  # a writer holding its lock
        conn.execute(requests.update().values(reason="half-done"))
        assert store.get(rec.id).reason == "hotfix"
        assert [r.id for r in store.list_requests()] == [rec.id]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_replicas_starting_together_migrate_once(kind: str, tmp_path: Any, request: Any):
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    else:
        server = request.getfixturevalue("postgres_server")
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        name = f"m{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        url = admin.url.set(database=name).render_as_string(hide_password=False)
    replicas = [Store(open_engine(url), SystemClock()) for _ in range(3)]
    errors: list[BaseException] = []

    def start(s: Store) -> None:
        try:
            s.migrate()
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=start, args=(s,)) for s in replicas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert replicas[0].verify_log().ok
    for s in replicas:
        s.engine.dispose()
    if kind == "postgres":
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


def test_extend_then_revoke_and_export_since(store: Store, clock: FakeClock):
    rec = store.create(ask(), manual())
    store.approve(rec.id, ops("bob@contoso.com"))
    store.claim_initiates("w")
    store.finish_initiate(rec.id, "w", ok=True, azure={}, ends_at=clock.now() + timedelta(hours=1))
    clock.advance(minutes=30)
    later = clock.now() + timedelta(hours=2)
    with pytest.raises(NotPermitted):  # extending is an approver's or an admin's call
        store.decide(rec.id, Action.EXTEND, "ann@contoso.com", {Role.REQUESTER}, extend_to=later)
    extended = store.decide(
        rec.id, Action.EXTEND, "bob@contoso.com", {Role.APPROVER}, "more time", extend_to=later
    )
    # the end stays Azure's until the worker's new initiate is granted
    assert (extended.extend_to, extended.ends_at) == (later, clock.now() + timedelta(minutes=30))
    assert [r.id for r in store.claim_extends("w")] == [rec.id]
    assert store.claim_extends("w2") == []  # one replica sends it
    revoked = store.decide(rec.id, Action.REVOKE, "ann@contoso.com", {Role.REQUESTER}, "done early")
    assert revoked.state is State.REVOKED
    buf = io.StringIO()
    assert store.export_log(buf, since=clock.now()) == 2
    assert [json.loads(x)["action"] for x in buf.getvalue().splitlines()] == ["extend", "revoke"]


@pytest.mark.parametrize(
    "kw",
    [{}, {"states": (State.PENDING,)}, {"requester": "ann@contoso.com"}],
    ids=["history", "pending", "mine"],
)
def test_each_page_reads_newest_first_through_an_index(tmp_path: Any, kw: dict[str, Any]):
    """The history page, the pending page and "my requests" read newest first: each must walk
    an index, not sort the whole table (a page of 10,000 requests would cost all of them)."""
    s = Store(open_engine(f"sqlite:///{tmp_path / 'b.sqlite'}"), FakeClock())
    s.migrate()
    seen: list[str] = []

    def plan(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM requests" in statement:
            rows = cursor.connection.execute(f"EXPLAIN QUERY PLAN {statement}", params)
            seen.append(" / ".join(str(r[-1]) for r in rows))

    event.listen(s.engine, "before_cursor_execute", plan)
    s.list_requests(limit=26, **kw)
    assert seen, "no query of the requests table"
    assert "USING INDEX ix_requests_" in seen[-1], seen[-1]
    assert "TEMP B-TREE" not in seen[-1], seen[-1]
    s.engine.dispose()


def test_export_csv_leaves_empty_and_plain_cells_as_they_are():
    """An empty cell is not a formula: no stray quote (""[:1] is in every string)."""
    from jitctl.broker.auditlog import write_csv

    item = {
        "seq": 1,
        "request_id": "",
        "at": "2026-01-01T00:00:00Z",
        "actor": "ann@contoso.com",
        "role": "requester",
        "action": "request",
        "from_state": None,
        "to_state": "pending",
        "reason": "",
        "data": {},
        "prev_hash": "0" * 64,
        "hash": "1" * 64,
    }
    buf = io.StringIO()
    assert write_csv([item, {**item, "seq": 2, "reason": "-rf", "actor": "@x"}], buf) == 2
    _, plain, formula = csv.reader(io.StringIO(buf.getvalue()))
    assert plain[1] == "" and plain[6] == "" and plain[8] == "" and plain[3] == "ann@contoso.com"
    assert (formula[8], formula[3]) == ("'-rf", "'@x")
