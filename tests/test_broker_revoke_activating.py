"""Revoking a request while Azure is still applying its initiate (issue 22), against the emulator
with the real SDK clients: the release waits for Azure's history (Initiated: the rule goes;
Failed: nothing to remove), the worker never moves a revoked request back to active, an
initiate not sent yet is never sent, and `broker revoke --wait` waits for all of it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from jitctl.app import App
from jitctl.broker.lifecycle import Action, Role, State
from jitctl.broker.store import Store
from jitctl.broker.views import release_of
from jitctl.broker.worker import Worker, WorkerSettings
from jitctl.cli.commands import cli
from jitctl.emulator import Backend, FakeClock
from jitctl.errors import Unavailable
from tests.brokerapi import PEOPLE, Broker
from tests.test_broker_worker import FAST, allow_rules, approved, initiates, logged

SLOW = WorkerSettings(wait_timeout=180, parallel=2)
GAVE_UP = (
    "Revoked while activating: access was verified live. The request stays revoked; the "
    "release removes the JIT allow rule once Azure's history says the initiate was applied, "
    "or finds none to remove."
)
WAITING = (
    "revoked while activating: Azure may still apply the initiate, and the broker removes its "
    "JIT allow rule once Azure's history says it did (or finds none to remove); until then the "
    "source may get in"
)


def release(store: Store, request_id: str) -> dict[str, Any] | None:
    return release_of(store.get(request_id), store.events_of([request_id]))


def revoke(store: Store, request_id: str) -> None:
    done = store.decide(request_id, Action.REVOKE, "alice@contoso.com", {Role.REQUESTER}, "done")
    assert done.state is State.REVOKED


def calls(backend: Backend, method: str, kind: str) -> int:
    return sum(1 for e in backend.log if e.method == method and kind in e.path.lower())


def test_revoked_while_azure_applies_it_the_rule_goes_once_azure_has_applied_it(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None
):
    backend.settings.propagation_delay = 300  # Azure applies it well after the worker's wait
    rec = approved(store, clock)
    worker = Worker(store, app.gateway(), clock, name="w1", settings=SLOW)
    (first,) = worker.run_once().initiated
    assert first.state is State.ACTIVATING  # waited 180 s: Azure still says Initiating
    revoke(store, rec.id)
    assert release(store, rec.id) == {
        "status": "pending",
        "at": None,
        "removed": [],
        "detail": WAITING,
    }
    reads = calls(backend, "GET", "jitnetworkaccesspolicies")
    assert worker.run_once().released == ()  # Initiating: not yet
    assert calls(backend, "GET", "jitnetworkaccesspolicies") == reads + 1
    assert worker.run_once().released == ()  # looked at again after 30 s, not every round
    assert calls(backend, "GET", "jitnetworkaccesspolicies") == reads + 1
    clock.advance(seconds=30)
    assert worker.run_once().released == ()
    assert store.get(rec.id).released_at is None and calls(backend, "DELETE", "") == 0
    clock.advance(seconds=90)  # 300 s: Azure applies it now, and writes the allow rule
    (released,) = worker.run_once().released
    assert len(released.removed) == 1 and released.removed[0].startswith(
        "vm-win01-nsg/MicrosoftDefenderForCloud-JITRule"
    )
    assert allow_rules(backend) == [] and calls(backend, "DELETE", "securityrules") == 1
    said = release(store, rec.id)
    assert said is not None
    assert (said["status"], said["removed"]) == ("done", list(released.removed))
    assert said["detail"] == "Removed 1 JIT allow rule(s); open connections survive."
    assert [e["action"] for e in logged(store, rec.id)] == [
        "request",
        "claim",
        "waiting",
        "revoke",
        "release",
    ]
    assert worker.run_once().released == () and len(initiates(backend)) == 1


def test_revoked_while_activating_and_azure_fails_the_initiate_nothing_is_removed(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None
):
    backend.settings.propagation_delay = 300
    backend.settings.initiate_fate = "fail"
    rec = approved(store, clock)
    worker = Worker(store, app.gateway(), clock, name="w1", settings=SLOW)
    worker.run_once()
    revoke(store, rec.id)
    assert worker.run_once().released == ()
    nsg_reads = calls(backend, "GET", "networksecuritygroups")
    clock.advance(seconds=120)  # Azure fails it
    (released,) = worker.run_once().released
    assert (released.removed, released.error) == ((), None)
    said = release(store, rec.id)
    assert said is not None and (said["status"], said["removed"]) == ("not_needed", [])
    assert said["detail"] == (
        "Azure never applied the initiate (its history says Failed "
        "(SecurityRulesLimitReached)): no rule to remove."
    )
    assert calls(backend, "GET", "networksecuritygroups") == nsg_reads  # no rule looked for
    assert calls(backend, "DELETE", "") == 0
    last = logged(store, rec.id)[-1]
    assert last["data"]["azure"] == {
        "ports": [{"number": 3389, "status": "Failed", "reason": "SecurityRulesLimitReached"}]
    }
    assert store.get(rec.id).state is State.REVOKED


def test_the_worker_finishing_activation_after_the_revoke_leaves_it_revoked(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None
):
    backend.settings.propagation_delay = 60
    rec = approved(store, clock)

    class RevokedWhileWaiting:  # an admin revokes it during the worker's wait
        def now(self) -> Any:
            return clock.now()

        def sleep(self, seconds: float) -> None:
            if store.get(rec.id).state is State.ACTIVATING:
                store.decide(rec.id, Action.REVOKE, "carol@contoso.com", {Role.ADMIN}, "wrong VM")
            clock.advance(seconds)

    worker = Worker(store, app.gateway(), RevokedWhileWaiting(), name="w1", settings=SLOW)
    done = worker.run_once()
    ((out,), (released,)) = done.initiated, done.released  # given up, then released
    assert (out.state, out.detail) == (State.REVOKED, GAVE_UP)
    after = store.get(rec.id)
    assert (after.state, after.ends_at, after.access, after.claimed_by) == (
        State.REVOKED,
        None,
        None,
        None,
    )
    events = logged(store, rec.id)
    assert [(e["action"], e["from_state"], e["to_state"]) for e in events] == [
        ("request", None, "approved"),
        ("claim", "approved", "activating"),
        ("revoke", "activating", "revoked"),
        ("gave_up", "revoked", "revoked"),
        ("release", "revoked", "revoked"),
    ]
    assert events[3]["reason"] == GAVE_UP
    assert events[3]["data"]["azure"]["verification"]["effective"] is True
    assert len(released.removed) == 1 and allow_rules(backend) == []
    again = worker.run_once()
    assert (again.initiated, again.released) == ((), ())
    assert store.get(rec.id).state is State.REVOKED and len(initiates(backend)) == 1


class RevokedBeforeSending:
    """The broker's gateway: the revoke commits while the worker reads the JIT policy, after
    its claim and before its initiate."""

    def __init__(self, gw: Any, revoke: Callable[[], None]) -> None:
        self.gw, self.revoke = gw, revoke

    def list_policies(self, *args: Any) -> Any:
        policies = self.gw.list_policies(*args)
        self.revoke()
        return policies

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gw, name)


def test_revoked_after_the_claim_before_the_initiate_nothing_is_sent_nor_removed(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None
):
    rec = approved(store, clock)
    racing = RevokedBeforeSending(app.gateway(), lambda: revoke(store, rec.id))
    worker = Worker(store, racing, clock, name="w1", settings=FAST)
    seen = len(backend.log)
    done = worker.run_once()
    ((out,),) = (done.initiated,)
    reason = (
        "Revoked before its initiate was sent: nothing was sent to Azure, so there was no "
        "access to remove."
    )
    assert (out.state, out.detail, out.resent) == (State.REVOKED, reason, False)
    assert initiates(backend) == [] and done.released == ()  # recorded by the worker itself
    assert len(backend.log) == seen + 1  # the policy read it was doing, nothing after
    said = release(store, rec.id)
    assert said is not None and (said["status"], said["detail"]) == ("not_needed", reason)
    assert [e["action"] for e in logged(store, rec.id)] == ["request", "claim", "revoke", "release"]


class RevokedWhileAzureDidNotAnswer(RevokedBeforeSending):
    """The revoke commits while Azure does not answer the worker's first read."""

    answered = False

    def list_policies(self, *args: Any) -> Any:
        if not self.answered:
            self.answered = True
            self.revoke()
            raise Unavailable("Azure answered 503 ServiceUnavailable.", "Try again.")
        return self.gw.list_policies(*args)


def test_revoked_while_azure_did_not_answer_the_worker_gives_up_and_nothing_is_left(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None
):
    rec = approved(store, clock)
    racing = RevokedWhileAzureDidNotAnswer(app.gateway(), lambda: revoke(store, rec.id))
    done = Worker(store, racing, clock, name="w1", settings=FAST).run_once()
    ((out,), (released,)) = done.initiated, done.released
    assert (out.state, out.detail) == (
        State.REVOKED,
        "Revoked while activating: Azure did not answer: Azure answered 503 "
        "ServiceUnavailable. The request stays revoked; the release removes the JIT allow rule "
        "once Azure's history says the initiate was applied, or finds none to remove.",
    )
    assert released.removed == () and initiates(backend) == []
    said = release(store, rec.id)
    assert said is not None and said["status"] == "not_needed"
    assert [e["action"] for e in logged(store, rec.id)] == [
        "request",
        "claim",
        "revoke",
        "gave_up",
        "release",
    ]


def test_a_dead_replicas_claim_holds_the_release_until_stale_then_nothing_was_sent(
    store: Store, app: App, backend: Backend, clock: FakeClock, enabled: None
):
    """It may be sending the initiate right now: the release waits for its claim to go stale,
    then reads Azure's history (no initiate of this request: never sent)."""
    rec = approved(store, clock)
    assert [r.id for r in store.claim_initiates("dead")] == [rec.id]
    revoke(store, rec.id)
    worker = Worker(store, app.gateway(), clock, name="w1", settings=FAST)
    seen = len(backend.log)
    assert worker.run_once().released == () and len(backend.log) == seen
    assert store.claim_releases("w2") == []
    clock.advance(minutes=10, seconds=1)
    (released,) = worker.run_once().released
    said = release(store, rec.id)
    assert said is not None and (said["status"], said["detail"]) == (
        "not_needed",
        "Azure's history holds no initiate of this request (never sent, or refused): there was "
        "no access to remove.",
    )
    assert released.removed == () and initiates(backend) == []


# --- the CLI: `broker revoke --wait` on an activating request ---------------------------------


class Rounds:
    """The requester's clock, the broker's and Azure's time: while they wait, the broker's
    worker does a round."""

    def __init__(self, clock: FakeClock, worker: Worker) -> None:
        self.clock, self.worker = clock, worker

    def now(self) -> Any:
        return self.clock.now()

    def sleep(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.worker.run_once()


@pytest.fixture
def broker(tmp_path: Path, clock: FakeClock) -> Any:
    b = Broker(tmp_path, clock)
    yield b
    b.close()


def ann_revokes(broker: Broker, clock: Any, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    monkeypatch.setenv("JITCTL_BROKER_TOKEN", "tok-ann")
    monkeypatch.setenv("JITCTL_BROKER_URL", "http://127.0.0.1:8765")
    app = App(clock=clock, broker_http=broker.http)
    return CliRunner().invoke(cli, ["broker", *args], obj=app, catch_exceptions=False)


def activating(broker: Broker, app: App, backend: Backend, clock: FakeClock) -> tuple[str, Worker]:
    backend.settings.propagation_delay = 300
    rec = approved(broker.store, clock, requester=PEOPLE["ann"])
    worker = Worker(broker.store, app.gateway(), clock, name="w1", settings=SLOW)
    worker.run_once()
    assert broker.store.get(rec.id).state is State.ACTIVATING
    return rec.id, worker


def test_broker_revoke_wait_on_an_activating_request_waits_until_azure_applied_and_removed_it(
    broker, app, backend, clock, enabled, monkeypatch
):
    rid, worker = activating(broker, app, backend, clock)
    got = ann_revokes(
        broker,
        Rounds(clock, worker),
        monkeypatch,
        "revoke",
        rid,
        "--wait",
        "--timeout",
        "5m",
        "-o",
        "json",
    )
    assert got.exit_code == 0, got.output
    (removed,) = broker.store.events_of([rid])[-1]["data"]["removed"]
    assert removed.startswith("vm-win01-nsg/MicrosoftDefenderForCloud-JITRule")
    said = json.loads(got.stdout)["release"]
    assert said == {
        "status": "done",
        "at": said["at"],
        "removed": [removed],
        "detail": "Removed 1 JIT allow rule(s); open connections survive.",
    }
    # Azure applied it 300 s after the initiate; the release looked again within 30 s
    at = datetime.fromisoformat(said["at"].replace("Z", "+00:00"))
    assert timedelta(seconds=300) <= at - broker.store.get(rid).created_at < timedelta(seconds=330)
    assert allow_rules(backend) == [] and broker.store.get(rid).state is State.REVOKED


def test_broker_revoke_wait_times_out_with_8_while_azure_still_applies_it(
    broker, app, backend, clock, enabled, monkeypatch
):
    rid, worker = activating(broker, app, backend, clock)
    got = ann_revokes(
        broker, Rounds(clock, worker), monkeypatch, "revoke", rid, "--wait", "--timeout", "10s"
    )
    assert got.exit_code == 8
    assert got.stderr == (
        f"jitctl: error: Request {rid} is revoked, but the broker has not removed its JIT allow "
        f"rules yet.\nHint: See where it is with: jitctl broker show {rid}\n"
    )
    shown = ann_revokes(broker, clock, monkeypatch, "show", rid, "-o", "json")
    assert json.loads(shown.stdout)["release"]["detail"] == WAITING


def test_cancelling_an_activating_request_says_to_revoke_it(
    broker, app, backend, clock, enabled, monkeypatch
):
    rid, _ = activating(broker, app, backend, clock)
    got = ann_revokes(broker, clock, monkeypatch, "cancel", rid)
    assert got.exit_code == 6
    assert got.stderr == (
        "jitctl: error: Cannot cancel this request: it is activating.\n"
        "Hint: What you may do with it now: revoke.\n"
    )
    assert broker.store.get(rid).state is State.ACTIVATING
