"""`jitctl demo --broker`: the approval flow offline in one process (a broker in-process, the
emulator as identity provider), exit 0 only when access went live and was verified."""

from __future__ import annotations

import json

from click.testing import CliRunner

from jitctl.app import App
from jitctl.brokerdemo import run_broker_demo
from jitctl.cli.broker_demo import verified
from jitctl.cli.commands import cli
from jitctl.clock import FakeClock
from jitctl.emulator import Backend
from jitctl.emulator.settings import Settings
from jitctl.emulator.worlds import demo as seed

ARGS = ["demo", "--broker", "--fast", "--source-ip", "198.51.100.20"]


def test_the_broker_demo_asks_approves_initiates_verifies_and_prints_the_log():
    r = CliRunner().invoke(cli, ARGS, obj=App(clock=FakeClock()))
    assert r.exit_code == 0, r.output
    out = r.stdout
    titles = [line.split("  [")[0] for line in out.splitlines() if line.startswith("== ")]
    assert titles == [
        "== Enable JIT on vm-win01 (RDP 3389, 3 hours max)",
        "== Start a broker: its API in-process, SQLite in a temporary folder",
        "== alice@contoso.com asks for 3389 on vm-win01 from 198.51.100.20",
        "== bob@contoso.com approves it",
        "== The broker's worker initiates (its own identity) and waits until access is live",
        "== alice@contoso.com sees it active",
        "== Verify from the request's source (RDP on vm-win01)",
        "== Verify from another address (must be denied)",
        "== The audit log",
        "== The audit log's hash chain",
    ]
    assert "state        active" in out and "approved by  bob@contoso.com" in out
    assert "EFFECTIVE: 198.51.100.20 -> vm-win01 10.10.1.4:3389/tcp" in out
    assert "NOT EFFECTIVE: 198.51.100.99 -> vm-win01 10.10.1.4:3389/tcp" in out
    assert "audit log intact: 4 events, head " in out
    assert out.rstrip().splitlines()[-1] == (
        "Verdict: alice@contoso.com asked, bob@contoso.com approved, the broker initiated; "
        "198.51.100.20 reaches vm-win01:3389 and 198.51.100.99 does not; the audit log's 4 "
        "events are intact."
    )


def test_the_broker_demo_as_json_has_the_log_and_says_ok():
    r = CliRunner().invoke(cli, ["-o", "json", *ARGS], obj=App(clock=FakeClock()))
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and doc["arm_calls"] == sum(s["arm_calls"] for s in doc["steps"])
    events = next(s["result"] for s in doc["steps"] if s["title"] == "The audit log")
    assert [(e["actor"], e["action"], e["to_state"]) for e in events] == [
        ("alice@contoso.com", "request", "pending"),
        ("bob@contoso.com", "approve", "approved"),
        ("broker-demo", "claim", "activating"),
        ("broker-demo", "activate", "active"),
    ]
    activated = events[-1]["data"]["azure"]
    assert activated["request"]["justification"].startswith("broker:")
    assert activated["verification"]["effective"] is True


def test_access_that_never_goes_live_is_not_a_verified_demo():
    """Azure accepts the initiate and never applies it: the request stays activating (sent,
    not live; Azure promises no time), exit is not 0."""
    clock = FakeClock()
    backend = Backend(settings=Settings(propagation_delay=0), clock=clock)
    seed(backend)
    backend.settings.initiate_fate = "never"
    steps = list(run_broker_demo(App.for_backend(backend), "198.51.100.20"))
    shown = next(s.result for s in steps if s.title.endswith("sees it active"))
    assert shown["state"] == "activating"
    assert verified(steps) is False
