"""The broker's worker says nothing Azure does not (issue 22, review findings), against the
emulator with the real SDK clients: a grant Azure superseded is closed, and revoking it leaves
the newer grant's rule; a slow apply is not a failure; a passing Azure error loses no
approval; a sweep does not close an extension in flight; a stopped worker lets its claims go;
one round, whichever way it runs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from jitctl.app import App
from jitctl.broker.lifecycle import Action, Role, State
from jitctl.broker.records import RequestRecord
from jitctl.broker.rules import Principal
from jitctl.broker.store import Store, open_engine
from jitctl.broker.worker import Worker, WorkerSettings
from jitctl.emulator import Backend, FakeClock
from jitctl.emulator.settings import Fault
from tests.support import RG, SUB
from tests.test_broker_worker import FAST, SOURCE, allow_rules, approved, initiates, logged

DAVE_IP = "198.51.100.23"
SLOW = WorkerSettings(wait_timeout=180, parallel=2)


def policy_reads(backend: Backend) -> int:
    return sum(
        1 for e in backend.log if e.method == "GET" and "jitnetworkaccesspolicies" in e.path.lower()
    )


def dave(store: Store, clock: FakeClock) -> RequestRecord:
    who = Principal("dave@contoso.com", frozenset({"oncall"}))
    return approved(store, clock, requester=who, source=DAVE_IP)


# --- 1. superseded grants --------------------------------------------------------------------


def test_a_newer_request_for_the_vm_and_port_closes_the_older_as_superseded(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None
):
    worker = Worker(store, app.gateway(), clock, name="w1", settings=FAST)
    alice = approved(store, clock)
    worker.run_once()
    clock.advance(minutes=5)
    newer = dave(store, clock)
    done = worker.run_once()
    assert [(i.request_id, i.state) for i in done.initiated] == [(newer.id, State.ACTIVE)]
    (policy,) = app.gateway().list_policies(SUB, RG)
    older = policy.requests[0].vms[0].ports[0]
    assert (older.status, older.status_reason) == ("Revoked", "NewerRequestInitiated")  # Azure
    at = f"{clock.now():%Y-%m-%d %H:%M}Z"
    why = f"Superseded by request {newer.id} at {at} (Azure: NewerRequestInitiated)."
    assert store.get(alice.id).state is State.EXPIRED
    assert done.closed == ((alice.id, why),)
    assert store.get(newer.id).state is State.ACTIVE
    last = logged(store, alice.id)[-1]
    assert (last["action"], last["from_state"], last["to_state"], last["reason"]) == (
        "expire",
        "active",
        "expired",
        why,
    )
    assert last["data"]["superseded_by"] == newer.id
    assert last["data"]["azure"]["superseded_on"] == [3389]
    assert worker.run_once().closed == ()  # once


def test_a_grant_ended_by_a_direct_request_is_noticed_within_a_minute_reading_azure_once(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None, run: Any
):
    worker = Worker(store, app.gateway(), clock, name="w1", settings=FAST)
    alice = approved(store, clock)
    worker.run_once()
    clock.advance(seconds=20)
    direct = run("request", "vm-win01", "-g", RG, "--port", "3389", "--source-ip", DAVE_IP)
    assert direct.exit_code == 0, direct.stderr
    reads = policy_reads(backend)
    assert worker.run_once().closed == ()  # read a minute apart at most, not every round
    assert policy_reads(backend) == reads
    clock.advance(seconds=41)
    closed = worker.run_once().closed
    assert store.get(alice.id).state is State.EXPIRED
    assert policy_reads(backend) == reads + 1  # one list call for the VM
    ((rid, why),) = closed
    assert rid == alice.id
    assert why.startswith("Superseded by a request of jitctl-emulator@contoso.com at ")


def test_revoking_a_superseded_request_leaves_the_newer_grants_rule_and_says_so(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None, run: Any
):
    """The newer grant lets in the same source (a renewal, a colleague behind the same NAT):
    its rule looks like the older one's, and stays."""
    worker = Worker(store, app.gateway(), clock, name="w1", settings=FAST)
    alice = approved(store, clock)
    worker.run_once()
    clock.advance(seconds=20)
    assert (
        run("request", "vm-win01", "-g", RG, "--port", "3389", "--source-ip", SOURCE).exit_code == 0
    )
    (rule,) = allow_rules(backend)  # the newer grant's (Azure removed the older one's)
    store.decide(alice.id, Action.REVOKE, "alice@contoso.com", {Role.REQUESTER}, "done")
    (released,) = worker.run_once().released
    assert allow_rules(backend) == [rule]
    assert [e for e in backend.log if e.method == "DELETE"] == []
    assert (released.removed, released.left) == ((), (3389,))
    last = logged(store, alice.id)[-1]
    assert last["action"] == "release"
    assert last["reason"] == (
        "No JIT allow rule was removed. Port(s) 3389 left alone: a newer request (by "
        "jitctl-emulator@contoso.com) superseded this one in Azure, and the allow rule there "
        "is the newer grant's."
    )
    assert last["data"]["left"] == [
        {"port": 3389, "newer": {"request": None, "requestor": "jitctl-emulator@contoso.com"}}
    ]


class NewerGrantMeanwhile:
    """The broker's gateway; right after the release reads the policy's history, someone's
    newer request from the same address is applied (Azure moves on between two reads)."""

    def __init__(self, gw: Any, newer: Callable[[], Any]) -> None:
        self.gw, self.newer = gw, newer

    def list_policies(self, *args: Any) -> Any:
        policies = self.gw.list_policies(*args)
        newer, self.newer = self.newer, lambda: None
        newer()
        return policies

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gw, name)


def test_a_newer_grant_applied_during_the_release_keeps_its_rule(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None, run: Any
):
    alice = approved(store, clock)
    Worker(store, app.gateway(), clock, name="w1", settings=FAST).run_once()
    store.decide(alice.id, Action.REVOKE, "alice@contoso.com", {Role.REQUESTER}, "done")
    clock.advance(seconds=20)

    def newer() -> None:
        got = run("request", "vm-win01", "-g", RG, "--port", "3389", "--source-ip", SOURCE)
        assert got.exit_code == 0, got.stderr

    racing = NewerGrantMeanwhile(app.gateway(), newer)
    (released,) = Worker(store, racing, clock, name="w1", settings=FAST).run_once().released
    (kept,) = allow_rules(backend)  # the newer grant's rule stays
    assert kept not in {r.split("/")[1] for r in released.removed}  # only the older one went


# --- 2. access applied after the wait ----------------------------------------------------------


def test_access_azure_applies_after_the_wait_goes_active_on_a_later_round_not_failed(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None
):
    backend.settings.propagation_delay = 200  # no SLA: longer than the worker's 180 s wait
    rec = approved(store, clock)
    worker = Worker(store, app.gateway(), clock, name="w1", settings=SLOW)
    (first,) = worker.run_once().initiated
    assert first.state is State.ACTIVATING and store.get(rec.id).state is State.ACTIVATING
    waiting = logged(store, rec.id)[-1]
    assert (waiting["action"], waiting["to_state"]) == ("waiting", "activating")
    assert waiting["reason"].startswith("Azure took the initiate; access is not live yet: ")
    assert waiting["reason"].endswith(
        "The broker keeps checking until access is live, Azure's history says Failed, or the "
        "request's end time passes."
    )
    clock.advance(seconds=30)  # another replica could take it now: the claim was let go
    (later,) = Worker(store, app.gateway(), clock, name="w2", settings=SLOW).run_once().initiated
    assert (later.state, later.resent) == (State.ACTIVE, False)
    assert len(initiates(backend)) == 1
    actions = [(e["action"], e["actor"]) for e in logged(store, rec.id)]
    assert actions == [
        ("request", "alice@contoso.com"),
        ("claim", "w1"),
        ("waiting", "w1"),
        ("activate", "w2"),  # a recheck, not a takeover: no reclaim event
    ]


def test_an_initiate_never_applied_stays_activating_until_its_end_then_expires(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None
):
    backend.settings.initiate_fate = "never"
    rec = approved(store, clock, duration=timedelta(minutes=30))
    worker = Worker(store, app.gateway(), clock, name="w1", settings=FAST)
    worker.run_once()
    assert store.get(rec.id).state is State.ACTIVATING
    clock.advance(seconds=30)
    calls = len(backend.log)
    (again,) = worker.run_once().initiated
    assert (again.state, again.detail) == (State.ACTIVATING, "not live yet")
    assert len(backend.log) - calls == 1  # a look at the history only, no event
    for _ in range(10):  # rechecks every 30 s add nothing to the audit log
        clock.advance(seconds=30)
        worker.run_once()
    clock.advance(minutes=30)
    (out,) = worker.run_once().initiated
    assert [e["action"] for e in logged(store, rec.id)] == ["request", "claim", "waiting", "expire"]
    assert out.state is State.EXPIRED
    assert out.detail == (
        "Its end time passed before access was seen live (Azure's history: Revoked (Expired))."
    )
    assert len(initiates(backend)) == 1


def test_an_initiate_azure_cannot_apply_fails_with_what_its_history_says(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None
):
    backend.settings.initiate_fate = "fail"
    rec = approved(store, clock)
    worker = Worker(store, app.gateway(), clock, name="w1", settings=FAST)
    worker.run_once()
    clock.advance(seconds=30)
    (out,) = worker.run_once().initiated
    assert out.state is State.FAILED
    assert out.detail == (
        "Azure took the initiate but could not apply it: its history says Failed "
        "(SecurityRulesLimitReached)."
    )
    assert logged(store, rec.id)[-1]["action"] == "fail"


# --- 3. a passing Azure error ------------------------------------------------------------------


def test_a_passing_azure_error_keeps_the_approval_and_a_later_round_initiates_it(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None
):
    backend.faults.append(Fault(503, match="jitNetworkAccessPolicies", method="GET", times=50))
    rec = approved(store, clock)
    worker = Worker(store, app.gateway(), clock, name="w1", settings=FAST)
    (out,) = worker.run_once().initiated
    assert out.state is State.ACTIVATING and out.detail.startswith("Azure did not answer: ")
    assert store.get(rec.id).state is State.ACTIVATING and initiates(backend) == []
    backend.faults.clear()
    clock.advance(seconds=5)
    (later,) = worker.run_once().initiated
    assert later.state is State.ACTIVE and len(initiates(backend)) == 1


# --- 4. an extension in flight -----------------------------------------------------------------


def test_the_sweep_leaves_an_extension_in_flight_and_finishing_it_keeps_it_active(
    store: Store, app: App, clock: FakeClock, enabled: None
):
    rec = approved(store, clock)
    worker = Worker(store, app.gateway(), clock, name="w1", settings=FAST)
    worker.run_once()
    clock.advance(minutes=59)
    new_end = clock.now() + timedelta(hours=2)
    store.decide(
        rec.id, Action.EXTEND, "carol@contoso.com", {Role.ADMIN}, "more", extend_to=new_end
    )
    assert [r.id for r in store.claim_extends("sender")] == [rec.id]  # being sent...
    clock.advance(minutes=2)  # ...past the old end
    assert store.sweep() == []
    done = store.finish_extend(rec.id, "sender", new_end, ok=True, azure={}, ends_at=new_end)
    assert (done.state, done.ends_at) == (State.ACTIVE, new_end)


# --- 5. a graceful stop --------------------------------------------------------------------------


def test_a_stopped_worker_lets_its_claim_go_at_once(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None
):
    backend.settings.initiate_fate = "never"
    stop = threading.Event()

    class StopsWhileWaiting:  # the worker is told to stop in the middle of its wait
        def now(self) -> Any:
            return clock.now()

        def sleep(self, seconds: float) -> None:
            clock.advance(seconds)
            stop.set()

    rec = approved(store, clock)
    worker = Worker(store, app.gateway(), StopsWhileWaiting(), name="w1", settings=SLOW)
    worker.clock.stop = stop
    (out,) = worker.run_once().initiated
    assert (out.state, out.detail) == (State.ACTIVATING, "stopped")
    taken = store.claim_initiates("w2", stale_after=timedelta(minutes=10))  # no 10 min wait
    assert [r.id for r in taken] == [rec.id]
    assert [e["action"] for e in logged(store, rec.id)] == ["request", "claim", "reclaim"]


def test_a_worker_stopped_while_extending_lets_the_extension_go_at_once(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None
):
    rec = approved(store, clock)
    Worker(store, app.gateway(), clock, name="w1", settings=FAST).run_once()
    new_end = clock.now() + timedelta(hours=2)
    store.decide(
        rec.id, Action.EXTEND, "carol@contoso.com", {Role.ADMIN}, "more", extend_to=new_end
    )
    backend.settings.initiate_fate = "never"
    stop = threading.Event()

    class StopsWhileWaiting:
        def now(self) -> Any:
            return clock.now()

        def sleep(self, seconds: float) -> None:
            clock.advance(seconds)
            stop.set()

    worker = Worker(store, app.gateway(), StopsWhileWaiting(), name="w2", settings=SLOW)
    worker.clock.stop = stop
    assert worker.run_once().extended == ()  # stopped
    assert [r.id for r in store.claim_extends("w3")] == [rec.id]  # no 10 min wait
    assert len(initiates(backend)) == 2  # w3 finds it in the history: not sent again


# --- 7. one round -----------------------------------------------------------------------------


class Traced(Store):
    """The store, noting which of the round's steps ran, in order; it stops the loop after
    the first round."""

    steps: list[str]
    stop: threading.Event

    def claim_initiates(self, *a: Any, **kw: Any) -> Any:
        self.steps.append("claim_initiates")
        return super().claim_initiates(*a, **kw)

    def sweep(self, *a: Any, **kw: Any) -> Any:
        self.steps.append("sweep")
        return super().sweep(*a, **kw)

    def list_requests(self, *a: Any, **kw: Any) -> Any:
        self.steps.append("list_requests")
        return super().list_requests(*a, **kw)

    def claim_releases(self, *a: Any, **kw: Any) -> Any:
        self.steps.append("claim_releases")
        return super().claim_releases(*a, **kw)

    def claim_extends(self, *a: Any, **kw: Any) -> Any:
        self.steps.append("claim_extends")
        self.stop.set()
        return super().claim_extends(*a, **kw)


def test_run_once_and_run_forever_run_the_same_round(tmp_path: Any, app: App, clock: FakeClock):
    traced = Traced(open_engine(f"sqlite:///{tmp_path / 'b.sqlite'}"), clock)
    traced.migrate()
    traced.steps, traced.stop = [], threading.Event()
    worker = Worker(traced, app.gateway(), clock, name="w1", settings=FAST)
    worker.run_once()
    once = traced.steps[:]
    traced.steps, traced.stop = [], threading.Event()
    worker.run_forever(traced.stop, 0.01)
    assert once == traced.steps
    assert once == ["claim_initiates", "sweep", "list_requests", "claim_releases", "claim_extends"]
    traced.engine.dispose()
