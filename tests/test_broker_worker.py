"""The broker's worker against the emulator (the real SDK clients): initiate once, verify live,
finish; fail with Azure's answer (the rest of what Azure may do: test_broker_worker_truth); take over a dead replica's claim without sending twice;
sweep; revoke by removing the allow rule."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from jitctl.app import App
from jitctl.broker.lifecycle import Action, Role, State
from jitctl.broker.models import events
from jitctl.broker.records import RequestRecord
from jitctl.broker.rules import Ask, Decision, Outcome, Principal
from jitctl.broker.store import Store, open_engine
from jitctl.broker.worker import REVOKE_NOTE, Worker, WorkerSettings, justification
from jitctl.emulator import Backend, FakeClock
from jitctl.emulator.settings import Fault
from tests.support import RG, SUB

VM = (
    f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines/vm-win01"
)
NSG = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/networkSecurityGroups/vm-win01-nsg"
SOURCE = "203.0.113.7"
FAST = WorkerSettings(wait_timeout=30, claim_stale_after=timedelta(minutes=10), parallel=2)


def approved(store: Store, clock: FakeClock, **kw: Any) -> RequestRecord:
    """A request the rules auto-approved (state approved at once)."""
    source = kw.pop("source", SOURCE)
    base: dict[str, Any] = {
        "requester": Principal("alice@contoso.com", frozenset({"oncall"})),
        "vm_id": VM,
        "ports": (3389,),
        "duration": timedelta(hours=1),
        "at": clock.now(),
        "reason": "INC42: disk full",
    }
    ask = Ask(**{**base, **kw})
    decision = Decision(Outcome.AUTO_APPROVED, ("p.yaml:3 (approvals[0])",), (), 0)
    return store.create(ask, decision, source=source)


def initiates(backend: Backend) -> list[dict[str, Any]]:
    return [e for e in backend.log if e.method == "POST" and e.path.endswith("/initiate")]


def allow_rules(backend: Backend, nsg: str = NSG) -> list[str]:
    return [r["name"] for r in backend.rules(nsg) if r["properties"]["access"] == "Allow"]


def logged(store: Store, request_id: str) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(events).where(events.c.request_id == request_id).order_by(events.c.seq)
        ).mappings()
        return [{**r, "data": json.loads(r["data"])} for r in rows]


def test_an_approved_request_is_initiated_once_verified_live_and_active(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None
):
    rec = approved(store, clock)
    before = clock.now()
    done = Worker(store, app.gateway(), clock, name="w1", settings=FAST).run_once()
    assert [(i.request_id, i.state, i.resent) for i in done.initiated] == [
        (rec.id, State.ACTIVE, True)
    ]
    assert len(initiates(backend)) == 1
    (policy,) = app.gateway().list_policies(SUB, RG)
    sent = policy.requests[-1]  # Azure's history: the broker's mark and the person in it
    assert sent.justification == f"broker:{rec.id}: alice@contoso.com: INC42: disk full"
    assert [(p.number, p.source) for p in sent.vms[0].ports] == [(3389, SOURCE)]
    active = store.get(rec.id)
    assert active.state is State.ACTIVE
    assert active.ends_at == before + timedelta(hours=1)
    assert len(allow_rules(backend)) == 1  # the grant is live in the NSG
    last = logged(store, rec.id)[-1]
    assert (last["action"], last["actor"], last["to_state"]) == ("activate", "w1", "active")
    azure = last["data"]["azure"]
    assert azure["request"]["ports"][0]["status"] == "Initiating"  # Azure's 202
    assert azure["request"]["justification"] == justification(active)
    assert azure["verification"]["effective"] is True
    assert azure["verification"]["ports"] == [{"effective": True, "port": 3389}]
    # a second round finds nothing to do: no second initiate
    again = Worker(store, app.gateway(), clock, name="w2", settings=FAST).run_once()
    assert again.initiated == () and len(initiates(backend)) == 1


def test_a_request_azure_refuses_fails_with_its_answer(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None
):
    rec = approved(store, clock, ports=(22,))  # not in the VM's JIT policy
    (out,) = Worker(store, app.gateway(), clock, name="w1", settings=FAST).run_once().initiated
    assert out.state is State.FAILED
    assert initiates(backend) == []
    last = logged(store, rec.id)[-1]
    assert (last["action"], last["to_state"]) == ("fail", "failed")
    assert last["reason"].startswith("Port 22 is not in the JIT policy 'default' of VM vm-win01")
    assert last["data"]["azure"]["error"]["type"] == "Refused"


def test_a_claim_a_dead_broker_left_before_sending_is_taken_over_and_sent_once(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None
):
    rec = approved(store, clock)
    assert [r.id for r in store.claim_initiates("dead")] == [rec.id]  # ...then it died
    worker = Worker(store, app.gateway(), clock, name="w2", settings=FAST)
    assert worker.run_once().initiated == ()  # a live claim is left alone
    clock.advance(minutes=11)
    (out,) = worker.run_once().initiated
    assert (out.state, out.resent) == (State.ACTIVE, True)
    assert len(initiates(backend)) == 1
    actions = [(e["action"], e["actor"]) for e in logged(store, rec.id)]
    assert actions == [
        ("request", "alice@contoso.com"),
        ("claim", "dead"),
        ("reclaim", "w2"),
        ("activate", "w2"),
    ]


class Crash(BaseException):
    """The process dies (not an error any handler takes)."""


class DiesAfterInitiate:
    """The broker's gateway, until the initiate is sent: then the process 'dies'."""

    def __init__(self, gw: Any) -> None:
        self.gw = gw

    def initiate(self, *args: Any) -> Any:
        self.gw.initiate(*args)
        raise Crash()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gw, name)


def test_a_broker_killed_after_sending_does_not_send_again_on_takeover(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None
):
    rec = approved(store, clock)
    with pytest.raises(Crash):
        Worker(store, DiesAfterInitiate(app.gateway()), clock, name="w1", settings=FAST).run_once()
    assert store.get(rec.id).state is State.ACTIVATING and len(initiates(backend)) == 1
    clock.advance(minutes=11)
    (out,) = Worker(store, app.gateway(), clock, name="w2", settings=FAST).run_once().initiated
    assert (out.state, out.resent) == (State.ACTIVE, False)
    assert len(initiates(backend)) == 1  # the history held it: not sent again
    last = logged(store, rec.id)[-1]
    assert last["data"]["azure"]["note"].startswith("The policy's request history holds")
    assert last["data"]["azure"]["request"]["justification"] == justification(rec)


def test_the_sweep_closes_ended_access_and_undecided_requests(
    store: Store, app: App, clock: FakeClock, enabled: None
):
    rec = approved(store, clock, duration=timedelta(minutes=30))
    worker = Worker(store, app.gateway(), clock, name="w1", settings=FAST)
    worker.run_once()
    clock.advance(minutes=31)
    assert worker.run_once().swept == ((rec.id, State.EXPIRED),)
    assert store.get(rec.id).state is State.EXPIRED


def test_revoke_removes_the_requests_allow_rule_and_says_what_survives(
    store: Store, app: App, backend: Backend, clock: FakeClock, run: Callable[..., Any]
):
    run("enable", "vm-win01", "vm-lnx01", "-g", RG, "--port", "3389", "--port", "22")
    lnx_nsg = NSG.replace("vm-win01-nsg", "snet-linux-nsg")
    other = run("request", "vm-lnx01", "-g", RG, "--port", "22", "--source-ip", SOURCE)
    assert other.exit_code == 0, other.stderr
    rec = approved(store, clock)
    worker = Worker(store, app.gateway(), clock, name="w1", settings=FAST)
    worker.run_once()
    clock.advance(seconds=5)
    assert len(allow_rules(backend)) == 1
    kept = allow_rules(backend, lnx_nsg)
    assert sum("JITRule" in n for n in kept) == 1
    store.decide(rec.id, Action.REVOKE, "alice@contoso.com", {Role.REQUESTER}, "done early")
    (released,) = worker.run_once().released
    assert allow_rules(backend) == []
    assert allow_rules(backend, lnx_nsg) == kept  # another VM's grant stays
    assert released.removed and released.removed[0].startswith("vm-win01-nsg/")
    deletes = [e.path for e in backend.log if e.method == "DELETE"]
    assert len(deletes) == 1 and "/securityRules/" in deletes[0]
    last = logged(store, rec.id)[-1]
    assert (last["action"], last["from_state"], last["to_state"]) == (
        "release",
        "revoked",
        "revoked",
    )
    assert last["reason"] == "Removed 1 JIT allow rule(s); open connections survive."
    assert last["data"]["note"] == REVOKE_NOTE
    assert store.get(rec.id).released_at == clock.now()
    assert worker.run_once().released == ()  # once


def test_revoke_without_network_write_rights_is_recorded_not_retried_forever(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None
):
    rec = approved(store, clock)
    worker = Worker(store, app.gateway(), clock, name="w1", settings=FAST)
    worker.run_once()
    store.decide(rec.id, Action.REVOKE, "carol@contoso.com", {Role.ADMIN}, "incident over")
    backend.faults.append(Fault(403, match="/securityRules/", method="DELETE"))
    (released,) = worker.run_once().released
    assert released.removed == () and released.error
    assert len(allow_rules(backend)) == 1  # still open, and the record says so
    last = logged(store, rec.id)[-1]
    assert last["reason"].startswith("The allow rules were not removed: ")
    assert last["data"]["error"]["type"] == "Forbidden"
    assert worker.run_once().released == ()


def test_a_request_without_a_source_fails_with_what_to_do(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None
):
    rec = approved(store, clock, source=None)
    (out,) = Worker(store, app.gateway(), clock, name="w1", settings=FAST).run_once().initiated
    assert out.state is State.FAILED and initiates(backend) == []
    assert logged(store, rec.id)[-1]["reason"] == "The request names no source address to let in."


def test_two_workers_on_one_postgresql_initiate_each_request_exactly_once(
    postgres_server: str, backend: Backend, clock: FakeClock, run: Callable[..., Any]
):
    """Two replicas (their own engine and gateway) run rounds while approvers race; every
    request needs two approvals. Each request is initiated once and goes live."""
    import threading
    import uuid

    from sqlalchemy import create_engine, text

    assert run("enable", "vm-win01", "-g", RG, "--port", "3389").exit_code == 0
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    name = f"w{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    stores = [Store(open_engine(url), clock) for _ in range(2)]
    stores[0].migrate()
    try:
        needs_two = Decision(Outcome.NEEDS_APPROVAL, ("p.yaml:3",), (("group:ops",),), 2)
        asked = Ask(
            Principal("alice@contoso.com", frozenset()),
            VM,
            (3389,),
            timedelta(hours=1),
            clock.now(),
        )
        ids = [stores[0].create(asked, needs_two, source=SOURCE).id for _ in range(8)]
        workers = [
            Worker(s, App.for_backend(backend).gateway(), clock, name=f"r{n}", settings=FAST)
            for n, s in enumerate(stores)
        ]
        done = threading.Event()
        errors: list[BaseException] = []

        def approve(n: int) -> None:
            from jitctl.broker.errors import AlreadyReviewed, WrongState

            for rid in ids:
                for who in (f"ops{n}@contoso.com", f"ops{n + 1}@contoso.com"):
                    try:
                        stores[n % 2].approve(rid, Principal(who, frozenset({"ops"})))
                    except (AlreadyReviewed, WrongState):
                        pass
                    except BaseException as err:
                        errors.append(err)

        def serve(w: Worker) -> None:
            try:
                while not done.is_set():
                    w.run_once()
                w.run_once()
            except BaseException as err:
                errors.append(err)

        approvers = [threading.Thread(target=approve, args=(n,)) for n in range(4)]
        replicas = [threading.Thread(target=serve, args=(w,)) for w in workers]
        for t in replicas + approvers:
            t.start()
        for t in approvers:
            t.join()
        done.set()
        for t in replicas:
            t.join()
        assert errors == []
        assert len(initiates(backend)) == len(ids)
        (policy,) = App.for_backend(backend).gateway().list_policies(SUB, RG)
        # one VM, one port: each newer initiate superseded the older grants in Azure
        newest = (policy.requests[-1].justification or "").split(":")[1]
        states = {i: stores[0].get(i).state for i in ids}
        assert [i for i, s in states.items() if s is State.ACTIVE] == [newest]
        assert {s for i, s in states.items() if i != newest} == {State.EXPIRED}
        sent = sorted(r.justification or "" for r in policy.requests)
        assert sent == sorted(f"broker:{i}: alice@contoso.com" for i in ids)
        assert stores[0].verify_log().ok
    finally:
        for s in stores:
            s.engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


def test_run_forever_works_until_stopped_and_stops_a_wait(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None
):
    """serve's loop: a request approved while it runs goes live; a wait in flight ends at
    stop (its claim is let go at once, for the next start or another replica to take over)."""
    import threading

    class Ticking:  # fake time, but each sleep takes a moment: a wait lasts while we look
        def now(self) -> Any:
            return clock.now()

        def sleep(self, seconds: float) -> None:
            time.sleep(0.005)
            clock.advance(seconds)

    stop = threading.Event()
    slow = WorkerSettings(wait_timeout=3600, parallel=2)
    worker = Worker(store, app.gateway(), Ticking(), name="w1", settings=slow)
    loop = threading.Thread(target=worker.run_forever, args=(stop, 0.01))
    loop.start()
    rec = approved(store, clock)
    deadline = time.monotonic() + 10
    while store.get(rec.id).state is not State.ACTIVE and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.get(rec.id).state is State.ACTIVE
    backend.settings.initiate_fate = "never"  # the next one waits...
    stuck = approved(store, clock, source="198.51.100.9")
    while store.get(stuck.id).state is not State.ACTIVATING and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    stop.set()  # ...until stopped
    loop.join(10)
    assert not loop.is_alive()
    assert store.get(stuck.id).state is State.ACTIVATING
    assert [e["action"] for e in logged(store, stuck.id)] == ["request", "claim"]
    assert [r.id for r in store.claim_initiates("w2")] == [stuck.id]  # at once


def test_an_approval_is_initiated_at_once_not_at_the_next_tick(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None
):
    """serve's loop wakes when an approval commits: with an hour between ticks, the second
    approved request is still initiated within moments (issue 22: approval -> initiate sent
    <= 100 ms)."""
    import threading

    class Ticking:
        def now(self) -> Any:
            return clock.now()

        def sleep(self, seconds: float) -> None:
            time.sleep(0.005)
            clock.advance(seconds)

    def active_soon(rec: RequestRecord) -> State:
        deadline = time.monotonic() + 10
        while store.get(rec.id).state is not State.ACTIVE and time.monotonic() < deadline:
            time.sleep(0.02)
        return store.get(rec.id).state

    stop = threading.Event()
    worker = Worker(store, app.gateway(), Ticking(), name="w1", settings=FAST)
    loop = threading.Thread(target=worker.run_forever, args=(stop, 3600.0))
    loop.start()
    try:
        assert active_soon(approved(store, clock)) is State.ACTIVE  # the first round's
        time.sleep(0.3)  # the rounds it caused are over: the next tick is an hour away
        assert active_soon(approved(store, clock, source="198.51.100.9")) is State.ACTIVE
    finally:
        stop.set()
        loop.join(10)
    assert not loop.is_alive()  # stopped within moments, though a tick was an hour away
    assert len(initiates(backend)) == 2


def extended_by_admin(store: Store, rec: RequestRecord, end: Any) -> RequestRecord:
    return store.decide(
        rec.id, Action.EXTEND, "carol@contoso.com", {Role.ADMIN}, "more time", extend_to=end
    )


def test_an_extension_sends_a_new_initiate_and_takes_azures_new_end(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None
):
    rec = approved(store, clock)
    first_end = clock.now() + timedelta(hours=1)
    worker = Worker(store, app.gateway(), clock, name="w1", settings=FAST)
    worker.run_once()
    clock.advance(minutes=30)
    new_end = clock.now() + timedelta(hours=2)
    decided = extended_by_admin(store, rec, new_end)
    assert (decided.ends_at, decided.extend_to) == (first_end, new_end)  # not Azure's yet
    (out,) = worker.run_once().extended
    assert (out.ok, out.ends_at, out.resent) == (True, new_end, True)
    assert len(initiates(backend)) == 2
    (policy,) = app.gateway().list_policies(SUB, RG)
    older, newer = policy.requests[-2:]
    assert (older.vms[0].ports[0].status, older.vms[0].ports[0].status_reason) == (
        "Revoked",
        "NewerRequestInitiated",
    )
    assert newer.justification == justification(rec)
    assert newer.vms[0].ports[0].end_time == new_end
    after = store.get(rec.id)
    assert (after.state, after.ends_at, after.extend_to) == (State.ACTIVE, new_end, None)
    assert len(allow_rules(backend)) == 1  # the newer grant's rule replaced the older one
    last = logged(store, rec.id)[-1]
    assert (last["action"], last["actor"], last["to_state"]) == ("extended", "w1", "active")
    assert last["data"]["azure"]["verification"]["effective"] is True
    assert worker.run_once().extended == ()  # once
    clock.advance(minutes=31)  # past the first end: still active, as in Azure
    assert worker.run_once().swept == () and store.get(rec.id).state is State.ACTIVE


def test_an_extension_azure_refuses_keeps_the_earlier_end_and_the_sweep_closes_it(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None
):
    rec = approved(store, clock)
    worker = Worker(store, app.gateway(), clock, name="w1", settings=FAST)
    worker.run_once()
    first_end = store.get(rec.id).ends_at
    extended_by_admin(store, rec, clock.now() + timedelta(hours=5))  # over the policy's 3h
    (out,) = worker.run_once().extended
    assert (out.ok, out.detail) == (
        False,
        "Duration 5h exceeds the maximum of 3h for port 3389 of VM vm-win01.",
    )
    assert len(initiates(backend)) == 1
    after = store.get(rec.id)
    assert (after.ends_at, after.extend_to) == (first_end, None)
    last = logged(store, rec.id)[-1]
    assert (last["action"], last["data"]["azure"]["error"]["type"]) == ("extend_failed", "Refused")
    clock.advance(hours=1, seconds=1)
    assert worker.run_once().swept == ((rec.id, State.EXPIRED),)


def test_a_broker_killed_after_sending_an_extension_does_not_send_it_again(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None
):
    rec = approved(store, clock)
    Worker(store, app.gateway(), clock, name="w1", settings=FAST).run_once()
    new_end = clock.now() + timedelta(hours=2)
    extended_by_admin(store, rec, new_end)
    with pytest.raises(Crash):
        Worker(store, DiesAfterInitiate(app.gateway()), clock, name="w2", settings=FAST).run_once()
    assert len(initiates(backend)) == 2 and store.get(rec.id).ends_at != new_end
    worker = Worker(store, app.gateway(), clock, name="w3", settings=FAST)
    assert worker.run_once().extended == ()  # a live claim is left alone
    clock.advance(minutes=11)
    (out,) = worker.run_once().extended
    assert (out.ok, out.resent) == (True, False)
    assert len(initiates(backend)) == 2  # the history held it: not sent again
    assert store.get(rec.id).ends_at == new_end
